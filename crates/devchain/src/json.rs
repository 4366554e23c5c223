//! A small ordered JSON value for RPC replies, so key order and BTC amounts
//! (fixed eight decimals, as Core's `ValueFromAmount` prints them) match Core.

use bitcoin::Amount;

/// A JSON value as devchain writes it in replies.
#[derive(Debug, Clone, PartialEq)]
pub enum Json {
    /// `null`
    Null,
    /// `true` / `false`
    Bool(bool),
    /// An integer.
    Int(i64),
    /// A float, printed the way UniValue prints doubles.
    Float(f64),
    /// Satoshis printed as a BTC decimal with eight digits, e.g. `0.00001000`.
    Amount(i64),
    /// A string.
    Str(String),
    /// An array.
    Arr(Vec<Json>),
    /// An object whose keys keep their insertion order.
    Obj(Vec<(String, Json)>),
    /// Already-serialised JSON (used to echo request ids verbatim).
    Raw(String),
}

/// Builds a [`Json::Obj`] from `"key" => value` pairs.
#[macro_export]
macro_rules! obj {
    ($($k:expr => $v:expr),* $(,)?) => {
        $crate::json::Json::Obj(vec![$(($k.to_string(), $crate::json::Json::from($v))),*])
    };
}

impl Json {
    /// Serialises to compact JSON text.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        self.write(&mut out);
        out
    }

    /// Appends `key: value` to an object; does nothing on other values.
    pub fn push(&mut self, key: &str, value: impl Into<Json>) {
        if let Json::Obj(fields) = self {
            fields.push((key.to_string(), value.into()));
        }
    }

    fn write(&self, out: &mut String) {
        match self {
            Json::Null => out.push_str("null"),
            Json::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Json::Int(i) => out.push_str(&i.to_string()),
            Json::Float(f) => out.push_str(&format_float(*f)),
            Json::Amount(sat) => out.push_str(&format_amount(*sat)),
            Json::Str(s) => write_str(s, out),
            Json::Raw(s) => out.push_str(s),
            Json::Arr(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    item.write(out);
                }
                out.push(']');
            }
            Json::Obj(fields) => {
                out.push('{');
                for (i, (k, v)) in fields.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    write_str(k, out);
                    out.push(':');
                    v.write(out);
                }
                out.push('}');
            }
        }
    }
}

/// Formats satoshis as Core does: sign, whole BTC, `.`, eight digits.
pub fn format_amount(sat: i64) -> String {
    let sign = if sat < 0 { "-" } else { "" };
    let abs = sat.unsigned_abs();
    format!("{sign}{}.{:08}", abs / 100_000_000, abs % 100_000_000)
}

/// Core's `FormatMoney`: like [`format_amount`] but trailing zeros trimmed
/// down to two decimals (used inside error messages).
pub fn format_money(sat: i64) -> String {
    let mut s = format_amount(sat);
    while s.ends_with('0') && s.len() - s.find('.').unwrap_or(0) > 3 {
        s.pop();
    }
    s
}

fn format_float(f: f64) -> String {
    if !f.is_finite() {
        return "null".to_string();
    }
    if f.fract() == 0.0 && f.abs() < 1e15 {
        return format!("{}", f as i64);
    }
    if f.abs() < 1e-4 {
        // UniValue prints small doubles in scientific notation.
        return format!("{f:e}");
    }
    format!("{f}")
}

fn write_str(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

impl From<bool> for Json {
    fn from(v: bool) -> Self {
        Json::Bool(v)
    }
}
macro_rules! from_int {
    ($($t:ty),*) => {$(
        impl From<$t> for Json {
            fn from(v: $t) -> Self { Json::Int(v as i64) }
        }
    )*};
}
from_int!(i32, i64, u32, u64, usize, u16, u8);
impl From<f64> for Json {
    fn from(v: f64) -> Self {
        Json::Float(v)
    }
}
impl From<Amount> for Json {
    fn from(v: Amount) -> Self {
        Json::Amount(v.to_sat() as i64)
    }
}
impl From<&str> for Json {
    fn from(v: &str) -> Self {
        Json::Str(v.to_string())
    }
}
impl From<String> for Json {
    fn from(v: String) -> Self {
        Json::Str(v)
    }
}
impl From<&String> for Json {
    fn from(v: &String) -> Self {
        Json::Str(v.clone())
    }
}
impl<T: Into<Json>> From<Vec<T>> for Json {
    fn from(v: Vec<T>) -> Self {
        Json::Arr(v.into_iter().map(Into::into).collect())
    }
}
impl<T: Into<Json>> From<Option<T>> for Json {
    fn from(v: Option<T>) -> Self {
        v.map_or(Json::Null, Into::into)
    }
}
impl From<serde_json::Value> for Json {
    fn from(v: serde_json::Value) -> Self {
        Json::Raw(v.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_have_eight_decimals() {
        assert_eq!(format_amount(1000), "0.00001000");
        assert_eq!(format_amount(-5_000_000_000), "-50.00000000");
        assert_eq!(format_money(1000), "0.00001");
        assert_eq!(format_money(100_000_000), "1.00");
    }

    #[test]
    fn objects_keep_order_and_escape() {
        let j = obj! { "z" => 1, "a" => "x\"y", "n" => Json::Null, "f" => 4.656542373906925e-10 };
        assert_eq!(
            j.to_text(),
            r#"{"z":1,"a":"x\"y","n":null,"f":4.656542373906925e-10}"#
        );
        let v: serde_json::Value = serde_json::from_str(&j.to_text()).unwrap();
        assert_eq!(v["z"], 1);
    }
}
