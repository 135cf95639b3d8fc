//! The operator's commands token (`commands_token_file`): what enables device commands on
//! the HTTP endpoint.

/// The bearer token that enables commands. Not printed by `Debug`: configurations end up
/// in logs.
#[derive(Clone, PartialEq, Eq)]
pub struct CommandsToken(String);

impl CommandsToken {
    /// At least 16 characters, without whitespace: a guessable token would hand anyone who
    /// reaches the port the vehicles' relays.
    pub fn new(token: &str) -> Result<Self, String> {
        let token = token.trim();
        if token.len() < 16 || token.chars().any(char::is_whitespace) {
            return Err("a commands token is at least 16 characters, without whitespace".into());
        }
        Ok(CommandsToken(token.to_owned()))
    }

    /// Whether `presented` is the token, in time that does not depend on where they differ.
    pub(crate) fn matches(&self, presented: &[u8]) -> bool {
        let expected = self.0.as_bytes();
        presented.len() == expected.len() && presented.iter().zip(expected).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
    }
}

impl std::fmt::Debug for CommandsToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CommandsToken(..)")
    }
}
