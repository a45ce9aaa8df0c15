// Over 700 lines: the parameter value model, its validation, canonical encoding and the params! macro, which share one type.
//! Parameter values and the schemas that type them.
//!
//! Every stage implementation declares its parameters as a static slice of
//! [`ParamDef`]s: a name, a [`ParamType`], a default and one line of documentation.
//! The spec validator uses the schema to reject unknown or ill-typed parameters
//! (with a position in the YAML file), and to build the *canonical* parameter map
//! that enters the stage key:
//!
//! * keys are sorted (a `BTreeMap`);
//! * every parameter with a default is present, so writing a default explicitly
//!   yields the same key as leaving it out;
//! * numbers are coerced to the declared type (`4` and `4.0` are the same float);
//! * float maps with a fixed key set (e.g. `side_bias`) are filled with `0.0` for
//!   keys the user left out, which is what the seed's algorithm does with them.
//!
//! [`Value`] has a canonical binary encoding ([`Value::encode`]) used by the hasher, and
//! a JSON form used in cache records and Parquet metadata.

use std::collections::BTreeMap;
use std::fmt;

/// A typed parameter value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    List(Vec<Value>),
    Map(BTreeMap<String, Value>),
}

/// A float that must be positive (a learning rate, a noise scale): shared so
/// that every implementation declares it the same way.
pub const POS: ParamType = ParamType::Float { min: 1e-12, max: f64::INFINITY };

/// The canonical parameter map of one stage.
pub type Params = BTreeMap<String, Value>;

impl Value {
    /// Feed the canonical, length-prefixed encoding of this value to `out`.
    /// Each variant starts with its own tag byte so `1` (int) and `1.0` (float) differ.
    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Value::Bool(b) => {
                out.push(b'b');
                out.push(*b as u8);
            }
            Value::Int(i) => {
                out.push(b'i');
                out.extend_from_slice(&i.to_le_bytes());
            }
            Value::Float(f) => {
                out.push(b'f');
                // -0.0 and 0.0 are the same parameter.
                let f = if *f == 0.0 { 0.0 } else { *f };
                out.extend_from_slice(&f.to_bits().to_le_bytes());
            }
            Value::Str(s) => {
                out.push(b's');
                encode_str(s, out);
            }
            Value::List(items) => {
                out.push(b'l');
                out.extend_from_slice(&(items.len() as u64).to_le_bytes());
                for item in items {
                    item.encode(out);
                }
            }
            Value::Map(map) => {
                out.push(b'm');
                out.extend_from_slice(&(map.len() as u64).to_le_bytes());
                for (k, v) in map {
                    encode_str(k, out);
                    v.encode(out);
                }
            }
        }
    }

    /// JSON form, for records, manifests and Parquet metadata.
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            Value::Bool(b) => serde_json::Value::Bool(*b),
            Value::Int(i) => serde_json::Value::from(*i),
            Value::Float(f) => {
                serde_json::Number::from_f64(*f).map(serde_json::Value::Number).unwrap_or(serde_json::Value::Null)
            }
            Value::Str(s) => serde_json::Value::String(s.clone()),
            Value::List(items) => serde_json::Value::Array(items.iter().map(Value::to_json).collect()),
            Value::Map(map) => serde_json::Value::Object(map.iter().map(|(k, v)| (k.clone(), v.to_json())).collect()),
        }
    }

    /// Inverse of [`Value::to_json`]. JSON numbers with a fraction or exponent become
    /// floats; integers stay integers (records keep `4.0` as `4.0`).
    pub fn from_json(json: &serde_json::Value) -> Option<Value> {
        Some(match json {
            serde_json::Value::Bool(b) => Value::Bool(*b),
            serde_json::Value::Number(n) => {
                if let Some(i) = n.as_i64().filter(|_| !n.to_string().contains(['.', 'e', 'E'])) {
                    Value::Int(i)
                } else {
                    Value::Float(n.as_f64()?)
                }
            }
            serde_json::Value::String(s) => Value::Str(s.clone()),
            serde_json::Value::Array(items) => Value::List(items.iter().map(Value::from_json).collect::<Option<_>>()?),
            serde_json::Value::Object(map) => {
                Value::Map(map.iter().map(|(k, v)| Some((k.clone(), Value::from_json(v)?))).collect::<Option<_>>()?)
            }
            serde_json::Value::Null => return None,
        })
    }

    /// The name of this value's type, as used in error messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Bool(_) => "a boolean",
            Value::Int(_) => "an integer",
            Value::Float(_) => "a number",
            Value::Str(_) => "a string",
            Value::List(_) => "a list",
            Value::Map(_) => "a mapping",
        }
    }
}

fn encode_str(s: &str, out: &mut Vec<u8>) {
    out.extend_from_slice(&(s.len() as u64).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

/// As its JSON form ([`Value::to_json`]), so records and manifests can hold it.
impl serde::Serialize for Value {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.to_json().serialize(s)
    }
}

impl<'de> serde::Deserialize<'de> for Value {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Value, D::Error> {
        let json = serde_json::Value::deserialize(d)?;
        Value::from_json(&json).ok_or_else(|| serde::de::Error::custom("not a parameter value"))
    }
}

impl fmt::Display for Value {
    /// Compact, human form used in explanations such as
    /// `param n_samples changed 4096 → 2048`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Bool(b) => write!(f, "{b}"),
            Value::Int(i) => write!(f, "{i}"),
            Value::Float(x) => {
                if x.fract() == 0.0 && x.abs() < 1e15 {
                    write!(f, "{x:.1}")
                } else {
                    write!(f, "{x}")
                }
            }
            Value::Str(s) => write!(f, "{s}"),
            Value::List(items) => {
                write!(f, "[")?;
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        write!(f, ", ")?;
                    }
                    write!(f, "{item}")?;
                }
                write!(f, "]")
            }
            Value::Map(map) => {
                write!(f, "{{")?;
                for (i, (k, v)) in map.iter().enumerate() {
                    if i > 0 {
                        write!(f, ", ")?;
                    }
                    write!(f, "{k}: {v}")?;
                }
                write!(f, "}}")
            }
        }
    }
}

/// The declared type of a parameter.
#[derive(Debug, Clone, Copy)]
pub enum ParamType {
    Bool,
    /// An integer in `min..=max`.
    Int {
        min: i64,
        max: i64,
    },
    /// A finite float in `min..=max`.
    Float {
        min: f64,
        max: f64,
    },
    /// A string; when `choices` is non-empty it must be one of them.
    Str {
        choices: &'static [&'static str],
    },
    /// A mapping from a fixed set of keys to finite floats in `min..=max`;
    /// absent keys are filled with `0.0`.
    FloatMap {
        keys: &'static [&'static str],
        min: f64,
        max: f64,
    },
    /// A list of strings, each one of `choices`.
    StrList {
        choices: &'static [&'static str],
    },
    /// A list of at least `min_len` items, each of type `item`: numbers
    /// (`item: &ParamType::Float { … }`) or records (`item: &ParamType::Record
    /// { … }`, keyframes say).
    List {
        item: &'static ParamType,
        min_len: usize,
    },
    /// A mapping with exactly these fields, each of its own type, all required
    /// (`{ step: 0, value: 0.1 }`).
    Record {
        fields: &'static [(&'static str, ParamType)],
    },
}

impl ParamType {
    /// Some valid value of this type (the lower bound, the first choice).
    pub fn example(&self) -> Value {
        match self {
            ParamType::Bool => Value::Bool(false),
            ParamType::Int { min, .. } => Value::Int(*min),
            ParamType::Float { min, .. } => Value::Float(*min),
            ParamType::Str { choices } => Value::Str(choices.first().copied().unwrap_or("x").to_string()),
            ParamType::FloatMap { keys, min, .. } => {
                Value::Map(keys.iter().map(|k| (k.to_string(), Value::Float(*min))).collect())
            }
            ParamType::StrList { choices } => {
                Value::List(choices.first().map(|c| Value::Str(c.to_string())).into_iter().collect())
            }
            ParamType::List { item, min_len } => Value::List(vec![item.example(); (*min_len).max(1)]),
            ParamType::Record { fields } => {
                Value::Map(fields.iter().map(|(k, t)| (k.to_string(), t.example())).collect())
            }
        }
    }

    pub fn expected(&self) -> String {
        match self {
            ParamType::Bool => "a boolean (true or false)".into(),
            ParamType::Int { min, max } => {
                if *max == i64::MAX {
                    format!("an integer ≥ {min}")
                } else {
                    format!("an integer from {min} to {max}")
                }
            }
            ParamType::Float { min, max } => {
                if *max == f64::INFINITY {
                    format!("a number ≥ {min}")
                } else {
                    format!("a number from {min} to {max}")
                }
            }
            ParamType::Str { choices: [] } => "a string".into(),
            ParamType::Str { choices } => format!("one of: {}", choices.join(", ")),
            ParamType::FloatMap { keys, min, max } => {
                format!("a mapping with keys among {} and numbers from {min} to {max}", keys.join(", "))
            }
            ParamType::StrList { choices } => format!("a list of: {}", choices.join(", ")),
            ParamType::List { item, min_len: 0 } => format!("a list of items, each {}", item.expected()),
            ParamType::List { item, min_len } => {
                format!("a list of at least {min_len} items, each {}", item.expected())
            }
            ParamType::Record { fields } => {
                let names: Vec<&str> = fields.iter().map(|(k, _)| *k).collect();
                format!("a mapping with the fields {}", names.join(", "))
            }
        }
    }
}

/// A parameter's default.
#[derive(Debug, Clone, Copy)]
pub enum Default {
    /// The parameter must be given.
    Required,
    /// The parameter may be left out; it then does not appear in the canonical map.
    Optional,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(&'static str),
    /// A default float map, as (key, value) pairs.
    FloatMap(&'static [(&'static str, f64)]),
    StrList(&'static [&'static str]),
}

impl Default {
    /// The default as a value, or `None` for required and optional parameters.
    pub fn value(&self) -> Option<Value> {
        Some(match self {
            Default::Required | Default::Optional => return None,
            Default::Bool(b) => Value::Bool(*b),
            Default::Int(i) => Value::Int(*i),
            Default::Float(f) => Value::Float(*f),
            Default::Str(s) => Value::Str((*s).into()),
            Default::FloatMap(pairs) => {
                Value::Map(pairs.iter().map(|(k, v)| ((*k).to_string(), Value::Float(*v))).collect())
            }
            Default::StrList(items) => Value::List(items.iter().map(|s| Value::Str((*s).into())).collect()),
        })
    }
}

/// One declared parameter of a stage implementation.
#[derive(Debug, Clone, Copy)]
pub struct ParamDef {
    pub name: &'static str,
    pub ty: ParamType,
    pub default: Default,
    pub doc: &'static str,
}

/// A raw value as written in YAML, before it is checked against a [`ParamType`].
#[derive(Debug, Clone, PartialEq)]
pub enum Raw {
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Null,
    List(Vec<Raw>),
    Map(Vec<(String, Raw)>),
}

impl Raw {
    fn type_name(&self) -> &'static str {
        match self {
            Raw::Bool(_) => "a boolean",
            Raw::Int(_) => "an integer",
            Raw::Float(_) => "a number",
            Raw::Str(_) => "a string",
            Raw::Null => "nothing (null)",
            Raw::List(_) => "a list",
            Raw::Map(_) => "a mapping",
        }
    }
}

impl ParamType {
    /// Check a raw value against this type and return its canonical form, or a
    /// sentence saying what was expected and what was found.
    pub fn coerce(&self, raw: &Raw) -> Result<Value, String> {
        let mismatch = || format!("expected {}, found {}", self.expected(), describe_raw(raw));
        match (self, raw) {
            (ParamType::Bool, Raw::Bool(b)) => Ok(Value::Bool(*b)),
            (ParamType::Int { min, max }, Raw::Int(i)) => {
                if i < min || i > max {
                    Err(format!("expected {}, found {i}", self.expected()))
                } else {
                    Ok(Value::Int(*i))
                }
            }
            (ParamType::Float { min, max }, Raw::Int(_) | Raw::Float(_)) => {
                let x = match raw {
                    Raw::Int(i) => *i as f64,
                    Raw::Float(f) => *f,
                    _ => unreachable!(),
                };
                if !x.is_finite() || x < *min || x > *max {
                    Err(format!("expected {}, found {x}", self.expected()))
                } else {
                    Ok(Value::Float(x))
                }
            }
            (ParamType::Str { choices }, Raw::Str(s)) => {
                if choices.is_empty() || choices.contains(&s.as_str()) {
                    Ok(Value::Str(s.clone()))
                } else {
                    Err(format!("expected one of: {}, found `{s}`{}", choices.join(", "), suggest(s, choices)))
                }
            }
            (ParamType::FloatMap { keys, min, max }, Raw::Map(entries)) => {
                let mut map: BTreeMap<String, Value> =
                    keys.iter().map(|k| ((*k).to_string(), Value::Float(0.0))).collect();
                let mut errors = Vec::new();
                for (k, v) in entries {
                    if !keys.contains(&k.as_str()) {
                        errors.push(format!(
                            "unknown key `{k}` (expected one of: {}){}",
                            keys.join(", "),
                            suggest(k, keys)
                        ));
                        continue;
                    }
                    match (ParamType::Float { min: *min, max: *max }).coerce(v) {
                        Ok(x) => {
                            map.insert(k.clone(), x);
                        }
                        Err(e) => errors.push(format!("`{k}`: {e}")),
                    }
                }
                if errors.is_empty() { Ok(Value::Map(map)) } else { Err(errors.join("; ")) }
            }
            (ParamType::StrList { choices }, Raw::List(items)) => {
                let mut out = Vec::new();
                for item in items {
                    match item {
                        Raw::Str(s) if choices.contains(&s.as_str()) => out.push(Value::Str(s.clone())),
                        _ => {
                            return Err(format!(
                                "expected a list of: {}, found {}",
                                choices.join(", "),
                                describe_raw(item)
                            ));
                        }
                    }
                }
                Ok(Value::List(out))
            }
            (ParamType::List { item, min_len }, Raw::List(items)) => {
                if items.len() < *min_len {
                    return Err(format!("expected {}, found {} items", self.expected(), items.len()));
                }
                let mut out = Vec::new();
                let mut errors = Vec::new();
                for (i, raw) in items.iter().enumerate() {
                    match item.coerce(raw) {
                        Ok(v) => out.push(v),
                        Err(e) => errors.push(format!("item {i}: {e}")),
                    }
                }
                if errors.is_empty() { Ok(Value::List(out)) } else { Err(errors.join("; ")) }
            }
            (ParamType::Record { fields }, Raw::Map(entries)) => {
                let names: Vec<&str> = fields.iter().map(|(k, _)| *k).collect();
                let mut map = BTreeMap::new();
                let mut errors = Vec::new();
                for (k, v) in entries {
                    match fields.iter().find(|(f, _)| f == k) {
                        None => {
                            let hint = suggest(k, &names);
                            let hint = hint.trim_start_matches("; ");
                            let hint = if hint.is_empty() { String::new() } else { format!(", {hint}") };
                            errors.push(format!("unknown field `{k}` (the fields are {}{hint})", names.join(", ")))
                        }
                        Some((_, ty)) => match ty.coerce(v) {
                            Ok(x) => {
                                map.insert(k.clone(), x);
                            }
                            Err(e) => errors.push(format!("`{k}`: {e}")),
                        },
                    }
                }
                for (f, _) in fields.iter().filter(|(f, _)| !entries.iter().any(|(k, _)| k == f)) {
                    errors.push(format!("missing field `{f}`"));
                }
                if errors.is_empty() { Ok(Value::Map(map)) } else { Err(errors.join(", ")) }
            }
            _ => Err(mismatch()),
        }
    }
}

fn describe_raw(raw: &Raw) -> String {
    match raw {
        Raw::Str(s) => format!("the string `{s}`"),
        Raw::Int(i) => format!("the integer {i}"),
        Raw::Float(f) => format!("the number {f}"),
        Raw::Bool(b) => format!("the boolean {b}"),
        other => other.type_name().to_string(),
    }
}

/// `"; did you mean `x`?"` when one of `candidates` is close to `word`, else `""`.
pub fn suggest(word: &str, candidates: &[&str]) -> String {
    candidates
        .iter()
        .map(|c| (strsim::damerau_levenshtein(word, c), *c))
        .filter(|(d, c)| *d <= 2.max(c.len() / 4))
        .min()
        .map(|(_, c)| format!("; did you mean `{c}`?"))
        .unwrap_or_default()
}

/// A Rust type a declared parameter is read into (see [`crate::params!`]).
pub trait ParamValue: Sized {
    /// Read `name` from a validated map; the validator guarantees presence
    /// and type, so a mismatch is a bug in the declaration (and panics).
    fn read(p: &Params, name: &str) -> Self;
}

impl ParamValue for f64 {
    fn read(p: &Params, name: &str) -> f64 {
        p.f64(name)
    }
}
impl ParamValue for i64 {
    fn read(p: &Params, name: &str) -> i64 {
        p.i64(name)
    }
}
impl ParamValue for u64 {
    fn read(p: &Params, name: &str) -> u64 {
        u64::try_from(p.i64(name)).unwrap_or_else(|_| panic!("param `{name}` is negative"))
    }
}
impl ParamValue for usize {
    fn read(p: &Params, name: &str) -> usize {
        p.usize(name)
    }
}
impl ParamValue for bool {
    fn read(p: &Params, name: &str) -> bool {
        p.bool(name)
    }
}
impl ParamValue for String {
    fn read(p: &Params, name: &str) -> String {
        p.str(name).to_string()
    }
}
/// An item of a list parameter, read from its canonical value.
pub trait ParamItem: Sized {
    fn from_value(v: &Value) -> Option<Self>;
}
impl ParamItem for f64 {
    fn from_value(v: &Value) -> Option<f64> {
        match v {
            Value::Float(x) => Some(*x),
            Value::Int(i) => Some(*i as f64),
            _ => None,
        }
    }
}
impl ParamItem for i64 {
    fn from_value(v: &Value) -> Option<i64> {
        if let Value::Int(i) = v { Some(*i) } else { None }
    }
}
impl ParamItem for String {
    fn from_value(v: &Value) -> Option<String> {
        if let Value::Str(s) = v { Some(s.clone()) } else { None }
    }
}
/// A record (a [`ParamType::Record`] item): its fields by name.
impl ParamItem for BTreeMap<String, Value> {
    fn from_value(v: &Value) -> Option<BTreeMap<String, Value>> {
        if let Value::Map(m) = v { Some(m.clone()) } else { None }
    }
}
/// A list parameter: strings, numbers or records.
impl<T: ParamItem> ParamValue for Vec<T> {
    fn read(p: &Params, name: &str) -> Vec<T> {
        match p.get(name) {
            Some(Value::List(items)) => items
                .iter()
                .map(|v| T::from_value(v).unwrap_or_else(|| panic!("param `{name}`: an item of the wrong type: {v:?}")))
                .collect(),
            other => panic!("param `{name}`: schema promised a list, found {other:?}"),
        }
    }
}
impl ParamValue for BTreeMap<String, f64> {
    fn read(p: &Params, name: &str) -> BTreeMap<String, f64> {
        p.float_map(name).unwrap_or_else(|| panic!("param `{name}`: schema promised a mapping"))
    }
}
/// An optional parameter (`Default::Optional`): `None` when not given.
impl<T: ParamValue> ParamValue for Option<T> {
    fn read(p: &Params, name: &str) -> Option<T> {
        p.get(name).map(|_| T::read(p, name))
    }
}

/// A parameter's declaration without its name: (type, default, doc). The
/// name is the field's in [`crate::params!`], so the two cannot drift apart.
pub type Decl = (ParamType, Default, &'static str);

/// Declare an implementation's parameters once, as a struct: each field is a
/// parameter named after it, with its Rust type and its [`Decl`]. Generates
/// the struct, `STRUCT::DEFS` (the [`ParamDef`] table the validator checks
/// specs against, in field order) and `STRUCT::read(&Params)`, which reads the
/// validated map into the struct once.
///
/// ```ignore
/// params! {
///     /// `sample` / `pc`.
///     pub struct PcParams {
///         n_samples: usize = (ParamType::Int { min: 1, max: 100 }, Default::Int(4), "particles"),
///     }
/// }
/// ```
#[macro_export]
macro_rules! params {
    ($(#[$meta:meta])* $vis:vis struct $name:ident { $( $(#[$fmeta:meta])* $field:ident : $ty:ty = $decl:expr ),* $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq)]
        $vis struct $name {
            $( $(#[$fmeta])* pub $field: $ty, )*
        }

        impl $name {
            /// The declarations, in field order.
            pub const DEFS: &'static [$crate::engine::params::ParamDef] = &[
                $( $crate::engine::params::ParamDef {
                    name: stringify!($field),
                    ty: $decl.0,
                    default: $decl.1,
                    doc: $decl.2,
                }, )*
            ];

            /// Read a validated parameter map.
            #[allow(unused_variables)] // a struct of no parameters reads nothing
            pub fn read(p: &$crate::engine::params::Params) -> Self {
                $name { $( $field: $crate::engine::params::ParamValue::read(p, stringify!($field)), )* }
            }

            /// A valid map with every parameter given (defaults, and an example
            /// value for the optional ones): reading it exercises every field.
            pub fn example() -> $crate::engine::params::Params {
                Self::DEFS.iter().map(|d| (d.name.to_string(), d.default.value().unwrap_or_else(|| d.ty.example()))).collect()
            }
        }
    };
}

/// Typed accessors used by stage implementations. The validator has already
/// guaranteed presence and type, so a mismatch here is a bug in a stage's schema.
pub trait ParamsExt {
    fn f64(&self, name: &str) -> f64;
    fn i64(&self, name: &str) -> i64;
    fn usize(&self, name: &str) -> usize;
    fn bool(&self, name: &str) -> bool;
    fn str(&self, name: &str) -> &str;
    fn float_map(&self, name: &str) -> Option<BTreeMap<String, f64>>;
    fn str_list(&self, name: &str) -> Vec<String>;
}

impl ParamsExt for Params {
    fn f64(&self, name: &str) -> f64 {
        match self.get(name) {
            Some(Value::Float(x)) => *x,
            Some(Value::Int(i)) => *i as f64,
            other => panic!("param `{name}`: schema promised a number, found {other:?}"),
        }
    }
    fn i64(&self, name: &str) -> i64 {
        match self.get(name) {
            Some(Value::Int(i)) => *i,
            other => panic!("param `{name}`: schema promised an integer, found {other:?}"),
        }
    }
    fn usize(&self, name: &str) -> usize {
        usize::try_from(self.i64(name)).unwrap_or_else(|_| panic!("param `{name}` is negative"))
    }
    fn bool(&self, name: &str) -> bool {
        match self.get(name) {
            Some(Value::Bool(b)) => *b,
            other => panic!("param `{name}`: schema promised a boolean, found {other:?}"),
        }
    }
    fn str(&self, name: &str) -> &str {
        match self.get(name) {
            Some(Value::Str(s)) => s,
            other => panic!("param `{name}`: schema promised a string, found {other:?}"),
        }
    }
    fn float_map(&self, name: &str) -> Option<BTreeMap<String, f64>> {
        match self.get(name)? {
            Value::Map(m) => Some(
                m.iter()
                    .map(|(k, v)| match v {
                        Value::Float(x) => (k.clone(), *x),
                        other => panic!("param `{name}.{k}`: expected a number, found {other:?}"),
                    })
                    .collect(),
            ),
            other => panic!("param `{name}`: schema promised a mapping, found {other:?}"),
        }
    }
    fn str_list(&self, name: &str) -> Vec<String> {
        match self.get(name) {
            Some(Value::List(items)) => items
                .iter()
                .map(|v| match v {
                    Value::Str(s) => s.clone(),
                    other => panic!("param `{name}`: expected strings, found {other:?}"),
                })
                .collect(),
            other => panic!("param `{name}`: schema promised a list, found {other:?}"),
        }
    }
}

/// Encode a whole canonical parameter map (sorted keys, length-prefixed).
pub fn encode_params(params: &Params, out: &mut Vec<u8>) {
    Value::Map(params.clone()).encode(out)
}

/// JSON object of a canonical parameter map.
pub fn params_to_json(params: &Params) -> serde_json::Value {
    Value::Map(params.clone()).to_json()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn int_and_float_encode_differently() {
        let (mut a, mut b) = (Vec::new(), Vec::new());
        Value::Int(1).encode(&mut a);
        Value::Float(1.0).encode(&mut b);
        assert_ne!(a, b);
    }

    #[test]
    fn float_param_accepts_integers() {
        let ty = ParamType::Float { min: 0.0, max: 10.0 };
        assert_eq!(ty.coerce(&Raw::Int(4)).unwrap(), Value::Float(4.0));
        assert!(ty.coerce(&Raw::Float(11.0)).is_err());
        assert!(ty.coerce(&Raw::Str("x".into())).is_err());
    }

    #[test]
    fn lists_of_numbers_and_of_records() {
        static FRAME: ParamType = ParamType::Record {
            fields: &[
                ("step", ParamType::Int { min: 0, max: 1000 }),
                ("value", ParamType::Float { min: 0.0, max: 1.0 }),
            ],
        };
        let keyframes = ParamType::List { item: &FRAME, min_len: 1 };
        let frame = |step: i64, value: Raw| Raw::Map(vec![("step".into(), Raw::Int(step)), ("value".into(), value)]);
        let ok = keyframes.coerce(&Raw::List(vec![frame(0, Raw::Int(0)), frame(10, Raw::Float(0.5))])).unwrap();
        let Value::List(items) = &ok else { panic!() };
        assert_eq!(items[1], Value::Map([("step".into(), Value::Int(10)), ("value".into(), Value::Float(0.5))].into()));
        let p: Params = [("frames".to_string(), ok)].into();
        let read: Vec<BTreeMap<String, Value>> = ParamValue::read(&p, "frames");
        assert_eq!(read[0]["value"], Value::Float(0.0), "an integer given for a float field is a float");
        // Every problem at once, each with the item and the field.
        let bad = Raw::List(vec![
            frame(0, Raw::Float(2.0)),
            Raw::Map(vec![("stpe".into(), Raw::Int(1)), ("value".into(), Raw::Float(0.1))]),
        ]);
        assert_eq!(
            keyframes.coerce(&bad).unwrap_err(),
            "item 0: `value`: expected a number from 0 to 1, found 2; item 1: unknown field `stpe` (the fields are \
             step, value, did you mean `step`?), missing field `step`"
        );
        assert!(keyframes.coerce(&Raw::List(vec![])).unwrap_err().contains("at least 1 items"));
        let numbers = ParamType::List { item: &ParamType::Float { min: 0.0, max: 1.0 }, min_len: 0 };
        let p: Params =
            [("w".to_string(), numbers.coerce(&Raw::List(vec![Raw::Int(1), Raw::Float(0.25)])).unwrap())].into();
        let w: Vec<f64> = ParamValue::read(&p, "w");
        assert_eq!(w, [1.0, 0.25]);
    }

    #[test]
    fn float_map_fills_missing_keys() {
        let ty = ParamType::FloatMap { keys: &["a", "b"], min: 0.0, max: 1.0 };
        let v = ty.coerce(&Raw::Map(vec![("a".into(), Raw::Float(0.5))])).unwrap();
        let Value::Map(m) = v else { panic!() };
        assert_eq!(m["b"], Value::Float(0.0));
        assert!(ty.coerce(&Raw::Map(vec![("c".into(), Raw::Float(0.5))])).is_err());
    }

    #[test]
    fn json_round_trip_keeps_types() {
        let v =
            Value::Map([("f".to_string(), Value::Float(4.0)), ("i".to_string(), Value::Int(4))].into_iter().collect());
        assert_eq!(Value::from_json(&v.to_json()).unwrap(), v);
    }

    #[test]
    fn suggestion_finds_typos() {
        assert_eq!(suggest("n_sample", &["n_samples", "tol"]), "; did you mean `n_samples`?");
        assert_eq!(suggest("zzz", &["n_samples"]), "");
    }
}
