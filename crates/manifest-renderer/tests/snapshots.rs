//! One YAML snapshot per spec example (tests/fixtures/*.yaml): every object rendered for it.

mod common;

#[test]
fn spec_examples() {
    insta::glob!("fixtures/*.yaml", |path| {
        let input = std::fs::read_to_string(path).unwrap();
        insta::assert_snapshot!(common::render_fixture(&input, common::DOMAIN));
    });
}
