//! Stable diagnostic codes. E1xx syntax, E2xx names, E3xx types, E4xx
//! windows and storage, W0xx warnings. A code that has shipped is never reused
//! for another meaning; retire it instead.

use serde::{Serialize, Serializer};
use std::fmt;

macro_rules! codes {
    ($($variant:ident = $code:literal, $summary:literal;)*) => {
        /// A stable diagnostic code.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum Code {
            $(#[doc = $summary] $variant,)*
        }

        impl Code {
            /// The code as printed, e.g. `E203`.
            pub fn as_str(self) -> &'static str {
                match self { $(Code::$variant => $code,)* }
            }

            /// One line saying what the code is about.
            pub fn summary(self) -> &'static str {
                match self { $(Code::$variant => $summary,)* }
            }

            /// Every code, in registry order.
            pub const ALL: &'static [Code] = &[$(Code::$variant,)*];
        }
    };
}

codes! {
    Syntax = "E100", "the text does not follow the grammar";
    TooDeep = "E101", "expressions or blocks are nested too deeply";
    TooLarge = "E102", "the file is too large";
    MissingVersion = "E103", "the file does not start with a `version` header";
    UnsupportedVersion = "E104", "the file needs a language version this build does not support";
    BadNumber = "E105", "a number literal is out of range";
    BadDuration = "E106", "a duration is malformed or out of range";
    BadEscape = "E107", "a string has an unknown escape sequence";
    BadRegex = "E108", "a regular expression does not compile";
    UnknownSource = "E201", "no source has this name";
    Duplicate = "E202", "a name is defined twice";
    UnknownField = "E203", "no field has this name";
    UnknownFunction = "E204", "no function or classifier has this name";
    UnknownMetric = "E205", "no metric has this name";
    ImportNotFound = "E206", "an imported file cannot be read";
    ImportCycle = "E207", "files import each other in a cycle";
    Reserved = "E208", "a reserved word is used as a name";
    UnknownType = "E209", "no type has this name";
    UnknownMember = "E210", "a value has no member of this name";
    UnnamedKey = "E211", "a computed column needs a name";
    UnknownFormat = "E212", "the source format is not supported";
    UnknownExport = "E213", "the export target is not supported";
    DuplicateClause = "E214", "a clause is given twice";
    MissingClause = "E215", "a required clause is missing";
    ArgumentCount = "E216", "a function gets the wrong number of arguments";
    EventTime = "E218", "the event-time field is missing, repeated or not a timestamp";
    UnknownKind = "E219", "a classifier rule has an unknown kind";
    UnknownColumn = "E220", "an alert or derived column refers to a column the metric does not have";
    TypeMismatch = "E301", "a value has the wrong type";
    Nullable = "E302", "a value that may be null is used where null is not allowed";
    MisplacedAggregate = "E303", "an aggregate is used outside `compute`, or inside another";
    NotAggregate = "E304", "a `compute` item is neither an aggregate nor built from aggregates";
    NotPredicate = "E305", "a condition is not a boolean";
    ExpectedLiteral = "E306", "an argument must be a literal";
    BadWindow = "E401", "a window or lateness is out of range";
    BadRollup = "E402", "a rollup tier does not line up with the finer tiers";
    BadRetention = "E403", "a retention is shorter than its tier";
    BadCardinality = "E404", "a cardinality limit is out of range";
    BadDnsbl = "E501", "a DNSBL source setting is malformed or out of range";
    DnsblTargetKey = "E502", "DNSBL targets are taken from a column that is not a group-by key of the metric";
    UnreachableRule = "W002", "a classifier rule can never match";
    NoDefault = "W003", "a classifier has no `default` outcome";
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Code {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn codes_are_unique_and_well_formed() {
        let mut seen = HashSet::new();
        for code in Code::ALL {
            let s = code.as_str();
            assert!(seen.insert(s), "{s} used twice");
            assert!(s.len() == 4 && (s.starts_with('E') || s.starts_with('W')), "{s}");
        }
    }
}
