//! Scalars, types and constants.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Scalar types of the language.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scalar {
    /// UTF-8 text.
    String,
    /// 64-bit signed integer.
    Int,
    /// 64-bit float.
    Float,
    /// true / false.
    Bool,
    /// Milliseconds since the Unix epoch, UTC.
    Timestamp,
    /// Milliseconds.
    Duration,
}

impl Scalar {
    /// The name as written in the language.
    pub fn name(self) -> &'static str {
        match self {
            Scalar::String => "string",
            Scalar::Int => "int",
            Scalar::Float => "float",
            Scalar::Bool => "bool",
            Scalar::Timestamp => "timestamp",
            Scalar::Duration => "duration",
        }
    }

    /// Int or float.
    pub fn is_numeric(self) -> bool {
        matches!(self, Scalar::Int | Scalar::Float)
    }
}

/// A scalar type and whether it may be null.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Type {
    /// The scalar.
    pub scalar: Scalar,
    /// Whether null is a possible value.
    pub nullable: bool,
}

impl Type {
    /// A non-null type.
    pub fn of(scalar: Scalar) -> Self {
        Type { scalar, nullable: false }
    }

    /// The same scalar, nullable if `nullable`.
    pub fn with_nullable(self, nullable: bool) -> Self {
        Type { scalar: self.scalar, nullable }
    }
}

impl fmt::Display for Type {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", self.scalar.name(), if self.nullable { "?" } else { "" })
    }
}

/// A constant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "value", rename_all = "snake_case")]
pub enum Value {
    /// No value.
    Null,
    /// Boolean.
    Bool(bool),
    /// Integer.
    Int(i64),
    /// Float.
    Float(f64),
    /// String.
    String(String),
    /// Milliseconds.
    Duration(u64),
}
