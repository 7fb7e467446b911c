//! Human-friendly durations and byte sizes, as written in config files and flags.

use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::time::Duration;

/// A duration such as `90s`, `10m`, `1h30m` or `500ms`. A bare number means seconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct HumanDuration(pub Duration);

/// A byte size such as `512M`, `2G`, `1.5GiB` or `4096`. Suffixes are binary (K = 1024).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct ByteSize(pub u64);

/// A memory limit as written in a config file or flag: a size, or `none` for no limit at all
/// (not even the default one).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemoryLimit {
    Size(ByteSize),
    Unlimited,
}

impl std::str::FromStr for HumanDuration {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        let hint = "write a duration like `30s`, `10m`, `1h30m` or `500ms`";
        let s = text.trim();
        if s.is_empty() {
            return Err(format!("empty duration; {hint}"));
        }
        if let Ok(secs) = s.parse::<u64>() {
            if secs == 0 {
                return Err(format!("duration `{text}` is zero; {hint}"));
            }
            return Ok(HumanDuration(Duration::from_secs(secs)));
        }
        let mut total = Duration::ZERO;
        let mut rest = s;
        while !rest.is_empty() {
            let digits = rest
                .find(|c: char| !(c.is_ascii_digit() || c == '.'))
                .ok_or_else(|| format!("`{text}` has a number without a unit; {hint}"))?;
            let (num, tail) = rest.split_at(digits);
            let unit_len = tail.find(|c: char| c.is_ascii_digit()).unwrap_or(tail.len());
            let (unit, next) = tail.split_at(unit_len);
            let value: f64 = num.parse().map_err(|_| format!("`{text}` is not a duration; {hint}"))?;
            let scale = match unit.trim() {
                "ms" => 0.001,
                "s" | "sec" | "secs" => 1.0,
                "m" | "min" | "mins" => 60.0,
                "h" | "hr" | "hrs" => 3600.0,
                "d" => 86400.0,
                other => return Err(format!("unknown duration unit `{other}` in `{text}`; {hint}")),
            };
            total += Duration::from_secs_f64(value * scale);
            rest = next;
        }
        if total.is_zero() {
            return Err(format!("duration `{text}` is zero; {hint}"));
        }
        Ok(HumanDuration(total))
    }
}

impl fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = self.0;
        if d.subsec_millis() != 0 || d.as_secs() == 0 {
            return write!(f, "{}ms", d.as_millis());
        }
        let (h, m, s) = (d.as_secs() / 3600, d.as_secs() / 60 % 60, d.as_secs() % 60);
        let mut out = String::new();
        if h > 0 {
            out += &format!("{h}h");
        }
        if m > 0 {
            out += &format!("{m}m");
        }
        if s > 0 || out.is_empty() {
            out += &format!("{s}s");
        }
        f.write_str(&out)
    }
}

impl std::str::FromStr for ByteSize {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        let hint = "write a size like `512M`, `2G` or `1048576`";
        let s = text.trim();
        let split = s.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(s.len());
        let (num, unit) = s.split_at(split);
        let value: f64 = num.parse().map_err(|_| format!("`{text}` is not a size; {hint}"))?;
        let scale: u64 = match unit.trim().to_ascii_lowercase().as_str() {
            "" | "b" => 1,
            "k" | "kb" | "kib" => 1 << 10,
            "m" | "mb" | "mib" => 1 << 20,
            "g" | "gb" | "gib" => 1 << 30,
            "t" | "tb" | "tib" => 1 << 40,
            other => return Err(format!("unknown size unit `{other}` in `{text}`; {hint}")),
        };
        let bytes = value * scale as f64;
        if bytes < 1.0 || !bytes.is_finite() || bytes > u64::MAX as f64 {
            return Err(format!("size `{text}` is out of range; {hint}"));
        }
        Ok(ByteSize(bytes as u64))
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (unit, scale) in [("T", 1u64 << 40), ("G", 1 << 30), ("M", 1 << 20), ("K", 1 << 10)] {
            if self.0 >= scale && self.0.is_multiple_of(scale) {
                return write!(f, "{}{unit}", self.0 / scale);
            }
        }
        write!(f, "{}", self.0)
    }
}

impl std::str::FromStr for MemoryLimit {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        if text.trim() == "none" {
            return Ok(MemoryLimit::Unlimited);
        }
        text.parse().map(MemoryLimit::Size).map_err(|e| format!("{e}, or `none` for no limit"))
    }
}

impl fmt::Display for MemoryLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MemoryLimit::Size(size) => size.fmt(f),
            MemoryLimit::Unlimited => f.write_str("none"),
        }
    }
}

macro_rules! string_serde {
    ($ty:ty, $desc:literal) => {
        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                #[derive(Deserialize)]
                #[serde(untagged)]
                enum Raw {
                    Int(u64),
                    Text(String),
                }
                match Raw::deserialize(d)? {
                    Raw::Int(n) => n.to_string().parse().map_err(serde::de::Error::custom),
                    Raw::Text(s) => s.parse().map_err(serde::de::Error::custom),
                }
            }
        }
        impl Serialize for $ty {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }
        impl JsonSchema for $ty {
            fn schema_name() -> String {
                stringify!($ty).to_string()
            }
            fn json_schema(_: &mut schemars::gen::SchemaGenerator) -> schemars::schema::Schema {
                let mut obj = schemars::schema::SchemaObject::default();
                obj.subschemas().any_of = Some(vec![
                    schemars::schema::SchemaObject {
                        instance_type: Some(schemars::schema::InstanceType::String.into()),
                        ..Default::default()
                    }
                    .into(),
                    schemars::schema::SchemaObject {
                        instance_type: Some(schemars::schema::InstanceType::Integer.into()),
                        ..Default::default()
                    }
                    .into(),
                ]);
                obj.metadata().description = Some($desc.to_string());
                obj.into()
            }
        }
    };
}

string_serde!(HumanDuration, "A duration such as \"30s\", \"10m\" or \"1h30m\"; a bare number is seconds.");
string_serde!(ByteSize, "A size such as \"512M\" or \"2G\" (binary units); a bare number is bytes.");
string_serde!(
    MemoryLimit,
    "A size such as \"512M\" or \"2G\" (binary units), a bare number of bytes, or \"none\" for no limit."
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        let d = |s: &str| s.parse::<HumanDuration>().map(|d| d.0);
        assert_eq!(d("90"), Ok(Duration::from_secs(90)));
        assert_eq!(d("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(d("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(d("1.5s"), Ok(Duration::from_millis(1500)));
        assert!(d("10 minutes").is_err());
        assert!(d("0s").is_err());
        assert!(d("0").is_err());
        assert!(d("").is_err());
        assert_eq!(HumanDuration(Duration::from_secs(5400)).to_string(), "1h30m");
        assert_eq!(HumanDuration(Duration::from_millis(250)).to_string(), "250ms");
    }

    #[test]
    fn sizes() {
        let b = |s: &str| s.parse::<ByteSize>().map(|b| b.0);
        assert_eq!(b("512M"), Ok(512 << 20));
        assert_eq!(b("2GiB"), Ok(2 << 30));
        assert_eq!(b("1.5g"), Ok(3 << 29));
        assert_eq!(b("4096"), Ok(4096));
        assert!(b("lots").is_err());
        assert!(b("0").is_err());
        assert!(b("3X").is_err());
        assert_eq!(ByteSize(2 << 30).to_string(), "2G");
        let m = |s: &str| s.parse::<MemoryLimit>();
        assert_eq!(m("none"), Ok(MemoryLimit::Unlimited));
        assert_eq!(m("2G"), Ok(MemoryLimit::Size(ByteSize(2 << 30))));
        assert!(m("lots").unwrap_err().ends_with("or `none` for no limit"));
        assert_eq!(MemoryLimit::Unlimited.to_string(), "none");
    }
}
