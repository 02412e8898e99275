//! SQLSTATE codes, parsed once where a driver error is classified, so the
//! code that decides what a failure means matches on a value instead of
//! looking for "(42501)" in a message.

use std::fmt;

/// A five-character SQLSTATE, e.g. `42501`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SqlState([u8; 5]);

impl SqlState {
    pub const INSUFFICIENT_PRIVILEGE: SqlState = SqlState(*b"42501");
    pub const UNDEFINED_TABLE: SqlState = SqlState(*b"42P01");
    pub const UNDEFINED_COLUMN: SqlState = SqlState(*b"42703");
    pub const UNDEFINED_FUNCTION: SqlState = SqlState(*b"42883");
    pub const UNDEFINED_OBJECT: SqlState = SqlState(*b"42704");
    pub const INVALID_SCHEMA_NAME: SqlState = SqlState(*b"3F000");
    pub const OBJECT_NOT_IN_PREREQUISITE_STATE: SqlState = SqlState(*b"55000");
    pub const FEATURE_NOT_SUPPORTED: SqlState = SqlState(*b"0A000");
    pub const QUERY_CANCELED: SqlState = SqlState(*b"57014");
    pub const SERIALIZATION_FAILURE: SqlState = SqlState(*b"40001");
    pub const DEADLOCK_DETECTED: SqlState = SqlState(*b"40P01");
    pub const INVALID_PASSWORD: SqlState = SqlState(*b"28P01");
    pub const INVALID_AUTHORIZATION: SqlState = SqlState(*b"28000");
    pub const INVALID_CATALOG_NAME: SqlState = SqlState(*b"3D000");
    pub const CANNOT_CONNECT_NOW: SqlState = SqlState(*b"57P03");
    pub const TOO_MANY_CONNECTIONS: SqlState = SqlState(*b"53300");

    /// Five ASCII digits or uppercase letters, as PostgreSQL sends them.
    pub fn parse(code: &str) -> Option<SqlState> {
        let bytes: [u8; 5] = code.as_bytes().try_into().ok()?;
        bytes
            .iter()
            .all(|b| b.is_ascii_digit() || b.is_ascii_uppercase())
            .then_some(SqlState(bytes))
    }

    pub fn as_str(&self) -> &str {
        // Only ASCII gets in through `parse` and the constants.
        std::str::from_utf8(&self.0).unwrap_or("?????")
    }
}

impl fmt::Display for SqlState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_five_character_codes_parse() {
        assert_eq!(SqlState::parse("42P01"), Some(SqlState::UNDEFINED_TABLE));
        assert_eq!(SqlState::parse("42501").unwrap().to_string(), "42501");
        for bad in ["", "4250", "425011", "42p01", "42 01", "ééé"] {
            assert_eq!(SqlState::parse(bad), None, "{bad}");
        }
    }
}
