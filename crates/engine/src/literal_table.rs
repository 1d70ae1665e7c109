//! The classifier prefilter's literal search over ASCII texts: which of a
//! set of lowercase literals occur in a text, ASCII case ignored.
//!
//! aho-corasick builds the automaton (its DFA: failure transitions resolved,
//! match sets merged); [`LiteralTable`] lays it out again for the one walk
//! the prefilter needs, because that walk, not the rules, is what a
//! classification waits on: each byte's transition is a load that depends
//! on the one before. The layout
//!
//! - folds ASCII case into the byte classes, so the text is not lowered;
//! - keeps, beside each state's transitions, its depth (the length of the
//!   literal prefix it stands for) and where its marks are: what the
//!   caller wants to know of the literals that end there, merged into one
//!   bit set, so a match costs a few ORs;
//! - numbers match states first, so one comparison tells whether a state
//!   reports anything, and the others in breadth-first order, so the
//!   shallow states most bytes lead to share cache lines;
//!
//! and [`LiteralTable::find`] walks a text as two halves at once, two
//! independent chains of loads instead of one.

use aho_corasick::automaton::Automaton;
use aho_corasick::{dfa, Anchored};
use std::collections::hash_map::Entry;
use std::collections::{HashMap, VecDeque};

/// A state's row: its transitions, one per byte class, then these.
const DEPTH: usize = 0;
/// Where a match state's marks start.
const MARKS: usize = 1;
const EXTRA_COLUMNS: usize = 2;

/// [`LiteralTable::find`] walks this many stretches of a text side by side.
const WALKS: usize = 2;

/// A literal automaton laid out for [`LiteralTable::find`].
#[derive(Debug)]
pub struct LiteralTable {
    /// Byte → class; ASCII capitals share their small letter's class.
    classes: [u8; 256],
    /// Entries per row: the classes, then the extra columns.
    row_len: usize,
    /// Rows, one per state; a transition is the next state's row offset.
    rows: Vec<u32>,
    /// The start state's row offset.
    start: u32,
    /// States whose row offset is below this have matches.
    match_limit: u32,
    /// Per match state, the marks of its literals, `mark_words` words.
    marks: Vec<u64>,
    mark_words: usize,
}

impl LiteralTable {
    /// Lays out `automaton`, a DFA over `literals` (ASCII lowercase; built
    /// unanchored, without case folding of its own). What [`Self::find`]
    /// reports of a literal is its marks: the bits `mark` sets in a
    /// `mark_words` bit set, made once for each state where literals end.
    /// `None` when it is too large to lay out, or a literal has a capital.
    pub fn new(
        automaton: &dfa::DFA,
        literals: &[Vec<u8>],
        mark_words: usize,
        mark: impl Fn(usize, &mut [u64]),
    ) -> Option<Self> {
        // Bytes that occur in no literal all lead wherever any one of them
        // does, so they share class 0; every other byte has its own class,
        // which its capital shares (the literals are lowercase, and the search
        // ignores ASCII case).
        if literals.iter().flatten().any(u8::is_ascii_uppercase) {
            return None;
        }
        let mut classes = [0u8; 256];
        let mut representatives = vec![None];
        for byte in literals.iter().flatten().copied() {
            if classes[usize::from(byte)] == 0 {
                classes[usize::from(byte)] = u8::try_from(representatives.len()).ok()?;
                representatives.push(Some(byte));
            }
        }
        representatives[0] = (0..=255u8).find(|&b| classes[usize::from(b)] == 0);
        for capital in b'A'..=b'Z' {
            classes[usize::from(capital)] = classes[usize::from(capital.to_ascii_lowercase())];
        }

        // Every state reachable from the start, breadth first (so by depth).
        let start = automaton.start_state(Anchored::No).ok()?;
        let mut order = vec![start];
        let mut depth = vec![0u32];
        let mut index = HashMap::from([(start, 0usize)]);
        let mut queue = VecDeque::from([0usize]);
        while let Some(i) = queue.pop_front() {
            for byte in representatives.iter().flatten() {
                let next = automaton.next_state(Anchored::No, order[i], *byte);
                if let Entry::Vacant(slot) = index.entry(next) {
                    slot.insert(order.len());
                    order.push(next);
                    depth.push(depth[i] + 1);
                    queue.push_back(order.len() - 1);
                }
            }
        }

        // Match states first, each group breadth first.
        let (mut numbering, mut count) = (vec![0usize; order.len()], 0);
        for wants_match in [true, false] {
            for (i, state) in order.iter().enumerate() {
                if automaton.is_match(*state) == wants_match {
                    numbering[i] = count;
                    count += 1;
                }
            }
        }
        let row_len = representatives.len() + EXTRA_COLUMNS;
        // Every row offset fits in a u32.
        u32::try_from(order.len().checked_mul(row_len)?).ok()?;
        let offset = |i: usize| numbering[i] as u32 * row_len as u32;
        let mut rows = vec![0u32; order.len() * row_len];
        let mut marks = Vec::new();
        let mut match_limit = 0;
        for (i, state) in order.iter().enumerate() {
            let at = numbering[i] * row_len;
            let row = &mut rows[at..at + row_len];
            for (class, byte) in representatives.iter().enumerate() {
                // A class without a byte is never looked up; it stays 0.
                if let Some(byte) = byte {
                    row[class] = offset(index[&automaton.next_state(Anchored::No, *state, *byte)]);
                }
            }
            let extra = &mut row[representatives.len()..];
            extra[DEPTH] = depth[i];
            if automaton.is_match(*state) {
                extra[MARKS] = u32::try_from(marks.len()).ok()?;
                let at = marks.len();
                marks.resize(at + mark_words, 0);
                for m in 0..automaton.match_len(*state) {
                    mark(automaton.match_pattern(*state, m).as_usize(), &mut marks[at..]);
                }
                match_limit = match_limit.max(offset(i) + 1);
            }
        }
        Some(LiteralTable { classes, row_len, rows, start: offset(0), match_limit, marks, mark_words })
    }

    /// Calls `found` with the marks of every literal that occurs in `text`
    /// (ASCII case ignored), once or more, several literals' at once.
    pub fn find(&self, text: &[u8], mut found: impl FnMut(&[u64])) {
        let mut report = |state: u32| {
            let at = self.rows[state as usize + self.row_len - EXTRA_COLUMNS + MARKS] as usize;
            found(&self.marks[at..at + self.mark_words]);
        };
        let next = |state: u32, byte: u8| self.rows[state as usize + usize::from(self.classes[usize::from(byte)])];
        if self.start < self.match_limit {
            report(self.start);
        }
        // Walk k reads stretch k and finds every literal that starts there;
        // one that starts there and ends further on, it finds by going on
        // for as long as its state is deeper than the bytes it has read
        // past its stretch. The last walk also reads the rest of the text.
        let len = text.len() / WALKS;
        let stretches: [&[u8]; WALKS] = std::array::from_fn(|k| &text[k * len..(k + 1) * len]);
        let mut states = [self.start; WALKS];
        for i in 0..len {
            for (state, stretch) in states.iter_mut().zip(stretches) {
                *state = next(*state, stretch[i]);
                if *state < self.match_limit {
                    report(*state);
                }
            }
        }
        let depth = |state: u32| self.rows[state as usize + self.row_len - EXTRA_COLUMNS + DEPTH] as usize;
        for (k, mut state) in states.into_iter().enumerate() {
            let is_last = k == WALKS - 1;
            for (read, &byte) in text[(k + 1) * len..].iter().enumerate() {
                if !is_last && depth(state) <= read {
                    break;
                }
                state = next(state, byte);
                if state < self.match_limit {
                    report(state);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(literals: &[&str]) -> LiteralTable {
        let literals: Vec<Vec<u8>> = literals.iter().map(|l| l.as_bytes().to_vec()).collect();
        let automaton = dfa::Builder::new().build(&literals).expect("small automaton");
        LiteralTable::new(&automaton, &literals, 1, |literal, marks| marks[0] |= 1 << literal).expect("small table")
    }

    fn found(table: &LiteralTable, text: &str) -> Vec<usize> {
        let mut found = 0u64;
        table.find(text.as_bytes(), |marks| found |= marks[0]);
        (0..64).filter(|&literal| found & 1 << literal != 0).collect()
    }

    /// What the walk must find: every literal that occurs, case ignored.
    fn occurring(literals: &[&str], text: &str) -> Vec<usize> {
        let text = text.to_ascii_lowercase();
        (0..literals.len()).filter(|&l| text.contains(literals[l])).collect()
    }

    #[test]
    fn literals_with_capitals_are_refused() {
        let literals = vec![b"Full".to_vec()];
        let automaton = dfa::Builder::new().build(&literals).expect("small automaton");
        assert!(LiteralTable::new(&automaton, &literals, 1, |_, _| {}).is_none());
    }

    #[test]
    fn finds_literals_across_the_split_and_in_any_case() {
        let literals = ["mailbox full", "full", "box", "over quota", "quota", "x", "mailbox", "spamhaus"];
        let table = table(&literals);
        for text in [
            "",
            "x",
            "Mailbox FULL",
            "452 4.2.2 The email account that you tried to reach is over quota",
            "550 5.7.1 Service unavailable; listed by SPAMHAUS, mailbox full",
            "mailboxfull",
            "ffffffffffffffffffffffffffffffffffffffffffffffffmailbox ful",
            "quotaquotaquota",
        ] {
            assert_eq!(found(&table, text), occurring(&literals, text), "{text:?}");
        }
    }

    /// Every placement of a literal against the split point, over texts
    /// of every length up to twice the longest literal.
    #[test]
    fn finds_every_placement_of_a_literal() {
        let literals = ["abcab", "bca", "cc", "abababab", "b"];
        let table = table(&literals);
        // Every text over {a, b, c, C} up to length 8, then longer ones from a seeded generator.
        let alphabet = ['a', 'b', 'c', 'C'];
        let mut texts: Vec<String> = vec![String::new()];
        for length in 1..=8 {
            let count = 4usize.pow(length);
            texts.extend((0..count).map(|mut n| {
                (0..length)
                    .map(|_| {
                        let c = alphabet[n % 4];
                        n /= 4;
                        c
                    })
                    .collect()
            }));
        }
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..2000 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let length = (seed % 40) as usize;
            texts.push((0..length).map(|i| alphabet[((seed >> (i % 60)) % 4) as usize]).collect());
        }
        for text in &texts {
            assert_eq!(found(&table, text), occurring(&literals, text), "{text:?}");
        }
    }
}
