//! The YAML reader and writer of the product's command-line tools (`lmcache-operator render`
//! and `crds`, `lmcache-webhook inject`), so that they all read and write YAML alike.

use crate::error::RenderError;
use serde::Serialize;
use serde_json::Value;

/// How user input is read: a repeated mapping key is passed to the receiving type, where a map
/// keeps the last value (as `serde_yaml` read it; kubectl users have files like that), and an
/// error is one line naming its line and column, without a source snippet, because the tools
/// print one problem per line.
fn options() -> serde_saphyr::Options {
    serde_saphyr::options! {
        duplicate_keys: serde_saphyr::DuplicateKeyPolicy::PassThrough,
        with_snippet: false,
    }
}

/// The documents of a multi-document YAML stream as JSON values, empty documents skipped.
/// A syntax error leaves the rest of the stream unusable: `Err` names the first document that
/// does not parse, numbered from 1 among the non-empty ones.
pub fn documents(text: &str) -> Result<Vec<Value>, RenderError> {
    let mut reader = text.as_bytes();
    serde_saphyr::read_with_options::<_, Value>(&mut reader, options())
        .enumerate()
        .map(|(index, document)| {
            document.map_err(|e| RenderError::Yaml {
                document: index + 1,
                message: e.to_string(),
            })
        })
        .collect()
}

/// One YAML document (no leading `---`), ending in a newline.
pub fn to_string<T: Serialize>(value: &T) -> Result<String, RenderError> {
    serde_saphyr::to_string(value).map_err(|e| RenderError::YamlOutput(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn documents_skip_empty_ones_and_keep_the_last_of_repeated_keys() {
        let docs = documents("---\na: 1\na: 2\n---\n# nothing\n---\nb: [x]\n").unwrap();
        assert_eq!(docs, [json!({"a": 2}), json!({"b": ["x"]})]);
        assert_eq!(documents("").unwrap(), Vec::<Value>::new());
    }

    #[test]
    fn a_syntax_error_names_its_document_on_one_line() {
        let err = documents("a: 1\n---\nb: [unclosed\n").unwrap_err().to_string();
        assert!(err.starts_with("document 2: invalid YAML: "), "{err}");
        assert!(!err.contains('\n'), "{err}");
    }

    #[test]
    fn written_yaml_reads_back_as_the_same_data() {
        let value = json!({"s": "a: b", "yes": "true", "n": "0755", "multi": "l1\nl2\n", "f": 80.0, "e": {}, "l": []});
        let text = to_string(&value).unwrap();
        assert_eq!(documents(&text).unwrap(), [value]);
    }
}
