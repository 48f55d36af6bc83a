//! `fmt(x)` of the spec: the shortest decimal that parses back to the same double, no exponent.

/// Renders a float for a command-line argument or generated JSON.
///
/// Rust's `Display` for `f64` already prints the shortest round-trip digits and never uses
/// exponent notation; it only needs the `.0` of integral values dropped (`1.0 -> "1"`).
pub fn fmt_f64(x: f64) -> String {
    let s = x.to_string();
    match s.strip_suffix(".0") {
        Some(integral) => integral.to_string(),
        None => s,
    }
}

#[cfg(test)]
mod tests {
    use super::fmt_f64;

    #[test]
    fn spec_examples() {
        let cases = [
            (60.0, "60"),
            (60.5, "60.5"),
            (0.8, "0.8"),
            (0.15, "0.15"),
            (1.0, "1"),
            (1.25, "1.25"),
            (5.0, "5"),
            (0.2, "0.2"),
            (0.3333333333333333, "0.3333333333333333"),
            (1e21, "1000000000000000000000"),
            (1e-7, "0.0000001"),
        ];
        for (x, want) in cases {
            assert_eq!(fmt_f64(x), want, "{x}");
            assert_eq!(fmt_f64(x).parse::<f64>().unwrap(), x);
        }
    }
}
