//! Checks that a user's SQL text is exactly one expression, parsed as Lance parses it.
//!
//! Lance reads a filter as `SELECT 1 FROM t WHERE <filter>` (and a calculated column as
//! `SELECT <expression> FROM t`) and keeps the first expression it finds: `a > 5, a < 3`, a
//! trailing `LIMIT 3` or `ORDER BY a`, a stray `)`, or a `;` and a second statement are read as
//! `a > 5` without a word. Here the text is tokenized and parsed with the same parser (the
//! `sqlparser` crate, generic dialect) and everything after the expression must be the end of
//! the text.

use sqlparser::dialect::GenericDialect;
use sqlparser::parser::{Parser, ParserError};
use sqlparser::tokenizer::{Location, Token, Tokenizer, Whitespace};

/// Why a text is not exactly one SQL expression, and where (a character offset into the
/// text, counted from 0, when the parser knows it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotOneExpression {
    pub reason: String,
    pub offset: Option<usize>,
}

impl std::fmt::Display for NotOneExpression {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.offset {
            Some(offset) => write!(f, "{} at offset {offset}", self.reason),
            None => f.write_str(&self.reason),
        }
    }
}

/// The character offset of a parser location (line and column from 1) in `text`.
fn offset_of(text: &str, at: Location) -> Option<usize> {
    if at.line == 0 || at.column == 0 {
        return None; // the parser's "no location"
    }
    let line = usize::try_from(at.line - 1).ok()?;
    let column = usize::try_from(at.column - 1).ok()?;
    let before: usize = text
        .split('\n')
        .take(line)
        .map(|l| l.chars().count() + 1)
        .sum();
    Some(before + column)
}

/// A parser error as a reason and an offset: its message ends in " at Line: L, Column: C"
/// when it has a place, which becomes the offset.
fn from_parser_error(text: &str, err: ParserError) -> NotOneExpression {
    let message = match err {
        ParserError::TokenizerError(m) | ParserError::ParserError(m) => m,
        ParserError::RecursionLimitExceeded => {
            return NotOneExpression {
                reason: "it nests deeper than the SQL parser reads".into(),
                offset: None,
            }
        }
    };
    let place = message.rfind(" at Line: ").and_then(|at| {
        let (line, column) = message[at + " at Line: ".len()..].split_once(", Column: ")?;
        let location = Location::new(line.parse().ok()?, column.parse().ok()?);
        Some((at, offset_of(text, location)?))
    });
    // The end of the text has no place of its own: it is the offset after the last character.
    let place = place.or_else(|| {
        message
            .ends_with("found: EOF")
            .then(|| (message.len(), text.chars().count()))
    });
    match place {
        Some((at, offset)) => NotOneExpression {
            reason: message[..at].to_string(),
            offset: Some(offset),
        },
        None => NotOneExpression {
            reason: message,
            offset: None,
        },
    }
}

/// The stack the parser runs on. It recurses once or more for each level of nesting (up to
/// its limit of 50 levels), a frame of tens of kilobytes in a debug build: more than a small
/// thread stack holds, so it runs on a thread of its own with room to spare (only the pages it
/// touches are used).
const PARSER_STACK: usize = 64 << 20;

/// `Ok` when `text` is exactly one SQL expression and nothing else (spaces and newlines
/// around it aside), else where and why not: text that does not parse, text after the
/// expression (a `,`, a `;`, a clause such as `LIMIT`, a stray `)`), or a comment (`--`,
/// `/* */`), whose text Lance would not read. Whether the expression names real columns or
/// has the right type is Lance's to say when it runs.
pub fn one_expression(text: &str) -> Result<(), NotOneExpression> {
    let owned = text.to_string();
    let parse = std::thread::Builder::new()
        .name("lancetorch-sql".into())
        .stack_size(PARSER_STACK)
        .spawn(move || parse_one(&owned));
    let failed = |why: String| NotOneExpression {
        reason: format!("the SQL parser could not run ({why})"),
        offset: None,
    };
    match parse {
        Ok(handle) => handle
            .join()
            .unwrap_or_else(|panic| Err(failed(crate::error::panic_message(panic.as_ref())))),
        Err(err) => Err(failed(err.to_string())),
    }
}

/// [`one_expression`] on the calling thread's stack.
fn parse_one(text: &str) -> Result<(), NotOneExpression> {
    let dialect = GenericDialect {};
    let tokens = Tokenizer::new(&dialect, text)
        .tokenize_with_location()
        .map_err(|e| NotOneExpression {
            reason: e.message,
            offset: offset_of(text, e.location),
        })?;
    if let Some(comment) = tokens.iter().find(|t| {
        matches!(
            t.token,
            Token::Whitespace(
                Whitespace::SingleLineComment { .. } | Whitespace::MultiLineComment(_)
            )
        )
    }) {
        return Err(NotOneExpression {
            reason: "a comment, whose text would not be read,".into(),
            offset: offset_of(text, comment.span.start),
        });
    }
    let mut parser = Parser::new(&dialect).with_tokens_with_locations(tokens);
    parser
        .parse_expr()
        .map_err(|e| from_parser_error(text, e))?;
    let next = parser.peek_token();
    if next.token != Token::EOF {
        return Err(NotOneExpression {
            reason: format!("the expression ends before '{}'", next.token),
            offset: offset_of(text, next.span.start),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_filter_lance_reads_is_one_expression() {
        for text in [
            "a > 5",
            "  a > 5 \n",
            "a == 5",
            "a != 5 AND b <> 3",
            "a IN (1, 2, 3)",
            "a NOT IN (1, 2)",
            "a BETWEEN 1 AND 3",
            "name LIKE 'ab%'",
            "name NOT LIKE '%;%'",
            "a IS NULL OR b IS NOT NULL",
            "NOT (a > 5)",
            "((a > 5) AND ((b < 3) OR (c = 1)))",
            "CAST(a AS BIGINT) % 2 = 0",
            "regexp_match(name, '^a.*')",
            "array_has_any(tags, make_array('x', 'y'))",
            "name = 'a;b'",
            "name = 'a)b'",
            "name = 'a -- b'",
            "name = 'it''s'",
            "`my col` > 1",
            "\"my col\" > 1",
            "s.b = 1",
            "`outer field`.`inner field` = 1",
            "ts > timestamp '2024-01-01 00:00:00'",
            "d < date '2024-01-01'",
            "x < 1.5e3 AND x > -2E-4",
            "a > 5\nAND b < 3",
            "a",
            "a % 3",
            "CASE WHEN a > 5 THEN 1 ELSE 0 END",
        ] {
            assert_eq!(one_expression(text), Ok(()), "{text:?}");
        }
    }

    fn refused(text: &str) -> NotOneExpression {
        one_expression(text).expect_err(text)
    }

    #[test]
    fn text_after_the_expression_is_refused_with_its_offset() {
        for (text, offset, token) in [
            ("a > 5, a < 3", 5, ","),
            ("a > 5 LIMIT 3", 6, "LIMIT"),
            ("a > 5 ORDER BY a", 6, "ORDER"),
            ("a > 5)", 5, ")"),
            ("a > 5; a < 3", 5, ";"),
            ("a > 5;", 5, ";"),
            ("a > 5 b", 6, "b"),
            ("a > 5\n  LIMIT 3", 8, "LIMIT"),
        ] {
            let err = refused(text);
            assert_eq!(err.offset, Some(offset), "{text:?}: {err}");
            assert!(
                err.reason.contains(&format!("'{token}'")),
                "{text:?}: {err}"
            );
        }
    }

    #[test]
    fn text_that_is_no_expression_is_refused() {
        for text in [
            "",
            "   ",
            "(a > 5",
            "a >",
            "a > 'open",
            "SELECT 1",
            "a AND AND b",
        ] {
            refused(text);
        }
        let err = refused("(a > 5");
        assert_eq!(err.offset, Some(6), "{err}");
        let err = refused("a > 'open");
        assert_eq!(err.offset, Some(4), "{err}");
    }

    #[test]
    fn a_comment_is_refused_where_it_starts() {
        assert_eq!(refused("a > 5 -- , b < 3").offset, Some(6));
        assert_eq!(refused("a > 5 /* LIMIT 3 */").offset, Some(6));
        assert_eq!(refused("a > 5 --").offset, Some(6));
        assert_eq!(refused("a\n/**/ > 5").offset, Some(2));
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_stack_overflow() {
        for text in [
            "(".repeat(100_000) + "a" + &")".repeat(100_000),
            "NOT ".repeat(100_000) + "a",
            "- ".repeat(100_000) + "1",
            "CASE WHEN ".repeat(100_000) + "a",
            "f(".repeat(100_000) + "a",
            "[".repeat(100_000) + "1",
        ] {
            // The parser's depth limit ends it, read as nesting or as text it could not take.
            one_expression(&text).expect_err(&text[..20]);
        }
        // A long expression that does not nest is read to its end.
        assert_eq!(one_expression(&("a + ".repeat(100_000) + "a")), Ok(()));
    }

    #[test]
    fn offsets_count_characters_across_lines() {
        assert_eq!(refused("é > 5 ü").offset, Some(6));
        assert_eq!(refused("a > 5\nAND b\n)").offset, Some(12));
    }
}
