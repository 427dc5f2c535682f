//! Whole numbers from JSON as JSON Schema counts them: `436` and `436.0` alike (a
//! client in JavaScript may well send the second). A fraction, or a number out of the
//! field's range, is refused as before.
//!
//! For a field: `#[serde(deserialize_with = "crate::strict::de")]`, and for an optional
//! one `#[serde(default, deserialize_with = "crate::strict::opt")]`.

use std::fmt;

use serde::de::{self, Deserializer, Visitor};

struct Whole;

impl Visitor<'_> for Whole {
    type Value = i128;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a whole number")
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<i128, E> {
        Ok(i128::from(v))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<i128, E> {
        Ok(i128::from(v))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<i128, E> {
        // Beyond ±2^100 no field's range reaches: out of range all the same.
        if v.is_finite() && v.fract() == 0.0 && v.abs() < 1e30 {
            Ok(v as i128)
        } else {
            Err(E::invalid_value(de::Unexpected::Float(v), &self))
        }
    }
}

fn narrow<T: TryFrom<i128>, E: de::Error>(v: i128) -> Result<T, E> {
    T::try_from(v).map_err(|_| E::custom(format!("{v} is out of range for this field")))
}

pub fn de<'de, D: Deserializer<'de>, T: TryFrom<i128>>(d: D) -> Result<T, D::Error> {
    narrow(d.deserialize_any(Whole)?)
}

pub fn opt<'de, D: Deserializer<'de>, T: TryFrom<i128>>(d: D) -> Result<Option<T>, D::Error> {
    struct Maybe;
    impl<'de> Visitor<'de> for Maybe {
        type Value = Option<i128>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a whole number or null")
        }
        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            d.deserialize_any(Whole).map(Some)
        }
    }
    d.deserialize_option(Maybe)?.map(narrow).transpose()
}

/// A `T` read from a JSON object (or TOML table) only.
struct Obj<T>(T);

impl<'de, T: serde::Deserialize<'de>> serde::Deserialize<'de> for Obj<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T>(std::marker::PhantomData<T>);
        impl<'de, T: serde::Deserialize<'de>> Visitor<'de> for V<T> {
            type Value = T;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: de::MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
                T::deserialize(de::value::MapAccessDeserializer::new(map))
            }
        }
        d.deserialize_map(V(std::marker::PhantomData)).map(Obj)
    }
}

pub fn object<'de, D: Deserializer<'de>, T: serde::Deserialize<'de>>(d: D) -> Result<Option<T>, D::Error> {
    Ok(<Option<Obj<T>> as serde::Deserialize>::deserialize(d)?.map(|o| o.0))
}

pub fn objects<'de, D: Deserializer<'de>, T: serde::Deserialize<'de>>(d: D) -> Result<Option<Vec<T>>, D::Error> {
    Ok(<Option<Vec<Obj<T>>> as serde::Deserialize>::deserialize(d)?.map(|v| v.into_iter().map(|o| o.0).collect()))
}

#[cfg(test)]
mod tests {
    #[derive(Debug, serde::Deserialize)]
    struct T {
        #[serde(deserialize_with = "super::de")]
        n: u32,
        #[serde(default, deserialize_with = "super::opt")]
        m: Option<u64>,
    }

    fn parse(s: &str) -> Result<T, String> {
        serde_json::from_str(s).map_err(|e| e.to_string())
    }

    #[test]
    fn whole_floats_are_whole_numbers_and_the_rest_is_refused() {
        let t = parse(r#"{"n": 436.0, "m": 7}"#).expect("whole");
        assert_eq!((t.n, t.m), (436, Some(7)));
        assert_eq!(parse(r#"{"n": 1, "m": null}"#).expect("null").m, None);
        assert_eq!(parse(r#"{"n": 1}"#).expect("absent").m, None);
        assert!(parse(r#"{"n": 1.5}"#).expect_err("refused").contains("whole number"));
        assert!(parse(r#"{"n": -1}"#).expect_err("refused").contains("out of range"));
        assert!(parse(r#"{"n": 4294967296}"#)
            .expect_err("refused")
            .contains("out of range"));
        assert!(parse(r#"{"n": 1e300}"#).is_err());
        assert!(parse(r#"{"n": "1"}"#).is_err());
        let toml: T = toml::from_str("n = 3\nm = 4").expect("toml");
        assert_eq!((toml.n, toml.m), (3, Some(4)));
    }

    #[derive(Debug, PartialEq, serde::Deserialize)]
    struct Inner {
        a: u32,
    }

    #[derive(Debug, serde::Deserialize)]
    struct Outer {
        #[serde(default, deserialize_with = "super::object")]
        one: Option<Inner>,
        #[serde(default, deserialize_with = "super::objects")]
        many: Option<Vec<Inner>>,
    }

    #[test]
    fn structs_come_from_objects_only() {
        let o: Outer = serde_json::from_str(r#"{"one": {"a": 1}, "many": [{"a": 2}]}"#).expect("objects");
        assert_eq!((o.one, o.many), (Some(Inner { a: 1 }), Some(vec![Inner { a: 2 }])));
        let o: Outer = serde_json::from_str(r#"{"one": null}"#).expect("null");
        assert!(o.one.is_none() && o.many.is_none());
        assert!(serde_json::from_str::<Outer>(r#"{"one": [1]}"#).is_err());
        assert!(serde_json::from_str::<Outer>(r#"{"many": [[2]]}"#).is_err());
        let t: Outer = toml::from_str("[one]\na = 3\n[[many]]\na = 4").expect("toml");
        assert_eq!(t.one, Some(Inner { a: 3 }));
    }
}
