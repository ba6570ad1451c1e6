//! Kubernetes quantities converted to the units SaladCloud uses.

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

/// A quantity that could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{value}` is not a size: use a number or a quantity such as 12Gi, 12288Mi or 12G")]
pub struct QuantityError {
    /// The text as written.
    pub value: String,
}

/// Parse a quantity to bytes. `plain_unit` is the multiplier for a number without suffix.
pub fn to_bytes(q: &Quantity, plain_unit: u64) -> Result<u64, QuantityError> {
    let text = q.0.trim();
    let err = || QuantityError { value: q.0.clone() };
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, suffix) = text.split_at(split);
    if number.is_empty() {
        return Err(err());
    }
    let multiplier: u64 = match suffix {
        "" => plain_unit,
        "k" => 1_000,
        "M" => 1_000_000,
        "G" => 1_000_000_000,
        "T" => 1_000_000_000_000,
        "Ki" => 1 << 10,
        "Mi" => 1 << 20,
        "Gi" => 1 << 30,
        "Ti" => 1 << 40,
        _ => return Err(err()),
    };
    let value: f64 = number.parse().map_err(|_| err())?;
    if !value.is_finite() || value < 0.0 {
        return Err(err());
    }
    Ok((value * multiplier as f64).round() as u64)
}

/// Megabytes (MiB, as SaladCloud counts memory). A plain number is already megabytes.
pub fn to_megabytes(q: &Quantity) -> Result<u64, QuantityError> {
    Ok(to_bytes(q, 1 << 20)? / (1 << 20))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(s: &str) -> Quantity {
        Quantity(s.to_string())
    }

    #[test]
    fn memory_accepts_plain_megabytes_and_quantities() {
        let cases = [
            (
                "12288",
                12288,
                "a plain number is megabytes, as in the SaladCloud API",
            ),
            ("12Gi", 12288, "binary suffix"),
            ("12288Mi", 12288, "MiB suffix"),
            ("1.5Gi", 1536, "fractional quantity"),
            ("12G", 11444, "decimal gigabytes round down to whole MiB"),
        ];
        for (input, want, reason) in cases {
            assert_eq!(to_megabytes(&q(input)).unwrap(), want, "{reason}");
        }
    }

    #[test]
    fn nonsense_is_an_error_that_names_the_value() {
        for bad in ["", "Gi", "12GB", "twelve", "-1Gi"] {
            let err = to_megabytes(&q(bad)).unwrap_err();
            assert!(err.to_string().contains(&format!("`{bad}`")));
        }
    }
}
