//! Shuffles that cost no memory: a seeded bijection of `0..n` onto itself, evaluated one
//! position at a time.
//!
//! A balanced Feistel network over the smallest even number of bits that covers `n`, with
//! round keys drawn from the epoch's generator; positions it maps beyond `n` are mapped again
//! until they land inside ("cycle walking"), which keeps the map a bijection of `0..n`. The
//! domain is under `4n`, so a position takes under four passes on average. Row `at(p)` is read
//! at position `p` of the epoch; a reader that stopped at position `p` resumes from `p` with
//! nothing but `(seed, epoch, p)`. The golden-vector tests lock the order.

use rand_core::Rng;
use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::permutation::{epoch_seed, generator, mix};

const ROUNDS: usize = 6;

pub struct Bijection {
    n: u64,
    half: u32,
    mask: u64,
    keys: [u64; ROUNDS],
}

impl Bijection {
    pub fn new(n: u64, seed: u64, epoch: u64) -> Self {
        let bits = (64 - n.saturating_sub(1).leading_zeros()).max(2);
        let half = bits.div_ceil(2);
        let mut rng = generator(epoch_seed(seed, epoch));
        let keys = std::array::from_fn(|_| rng.next_u64());
        Bijection {
            n,
            half,
            mask: (1u64 << half) - 1,
            keys,
        }
    }

    fn encrypt(&self, x: u64) -> u64 {
        let (mut left, mut right) = (x >> self.half, x & self.mask);
        for key in self.keys {
            (left, right) = (right, left ^ (mix(right ^ key) & self.mask));
        }
        (left << self.half) | right
    }

    /// The row at position `p` (`p < n`).
    pub fn at(&self, p: u64) -> u64 {
        debug_assert!(p < self.n);
        let mut x = self.encrypt(p);
        while x >= self.n {
            x = self.encrypt(x);
        }
        x
    }
}

/// The rows at `positions` of epoch `epoch` of the bijective shuffle of `0..n`.
pub fn bijection_rows(n: u64, seed: u64, epoch: u64, positions: &[i64]) -> Result<Vec<i64>> {
    if let Some((i, &p)) = positions
        .iter()
        .enumerate()
        .find(|&(_, &p)| p < 0 || p as u64 >= n)
    {
        return Err(Error::Index(format!(
            "position {p} (at index {i}) is outside the order of {n} rows"
        )));
    }
    let order = Bijection::new(n, seed, epoch);
    let map = |&p: &i64| order.at(p as u64) as i64;
    Ok(if crate::threads::parallel(positions.len(), 1 << 15) {
        positions.par_iter().map(map).collect()
    } else {
        positions.iter().map(map).collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn order(n: u64, seed: u64, epoch: u64) -> Vec<u64> {
        let b = Bijection::new(n, seed, epoch);
        (0..n).map(|p| b.at(p)).collect()
    }

    #[test]
    fn every_row_once() {
        for n in 1..300u64 {
            let mut rows = order(n, 3, n);
            rows.sort_unstable();
            assert_eq!(rows, (0..n).collect::<Vec<_>>(), "n={n}");
        }
    }

    #[test]
    fn golden_orders() {
        assert_eq!(order(10, 42, 0), GOLDEN_10_42_0);
        assert_eq!(order(10, 42, 1), GOLDEN_10_42_1);
        let big = Bijection::new(3_000_000_000, 7, 2);
        let rows: Vec<u64> = [0u64, 1, 2_999_999_999]
            .iter()
            .map(|&p| big.at(p))
            .collect();
        assert_eq!(rows, GOLDEN_3E9_7_2);
    }
    const GOLDEN_10_42_0: [u64; 10] = [4, 2, 9, 6, 8, 0, 3, 5, 1, 7];
    const GOLDEN_10_42_1: [u64; 10] = [4, 1, 9, 0, 8, 7, 5, 3, 6, 2];
    const GOLDEN_3E9_7_2: [u64; 3] = [2_968_442_575, 695_869_406, 2_328_829_011];

    #[test]
    fn epochs_and_seeds_differ() {
        assert_ne!(order(1000, 42, 0), order(1000, 42, 1));
        assert_ne!(order(1000, 42, 0), order(1000, 43, 0));
    }

    #[test]
    fn huge_ranges_stay_in_range() {
        for n in [u64::MAX, 1 << 63, (1 << 40) + 1] {
            let b = Bijection::new(n, 1, 0);
            for p in [0, 1, n / 2, n - 1] {
                assert!(b.at(p) < n);
            }
        }
    }

    #[test]
    fn positions_outside_are_refused() {
        assert!(bijection_rows(5, 1, 0, &[0, 5]).is_err());
        assert!(bijection_rows(5, 1, 0, &[-1]).is_err());
        assert_eq!(bijection_rows(5, 1, 0, &[]).unwrap(), Vec::<i64>::new());
    }
}
