//! Permutation math: seeded shuffles (whole rows or clumps of contiguous rows), random,
//! sequential and hash splits.
//!
//! Orders are a pure function of the seed: xoshiro256++ seeded through `seed_from_u64`,
//! Lemire's unbiased bounded integers, Fisher-Yates from the last position down. Changing any
//! of these changes every seeded epoch of every user: the golden-vector tests lock them.

use arrow_array::cast::AsArray;
use arrow_array::types::{
    Float16Type, Float32Type, Int16Type, Int32Type, Int8Type, UInt16Type, UInt32Type, UInt8Type,
};
use arrow_array::{Array, ArrayRef, RecordBatch};
use arrow_schema::DataType;
use rand_core::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;

use crate::error::{Error, Result};

pub fn generator(seed: u64) -> Xoshiro256PlusPlus {
    Xoshiro256PlusPlus::seed_from_u64(seed)
}

/// A uniform integer in `0..n` (`n > 0`), without modulo bias (Lemire 2019).
pub fn below(rng: &mut Xoshiro256PlusPlus, n: u64) -> u64 {
    let mut m = (rng.next_u64() as u128) * (n as u128);
    if (m as u64) < n {
        let threshold = n.wrapping_neg() % n;
        while (m as u64) < threshold {
            m = (rng.next_u64() as u128) * (n as u128);
        }
    }
    (m >> 64) as u64
}

/// Fisher-Yates, from the last position down.
pub fn shuffle_in_place<T>(items: &mut [T], rng: &mut Xoshiro256PlusPlus) {
    for i in (1..items.len()).rev() {
        let j = below(rng, i as u64 + 1) as usize;
        items.swap(i, j);
    }
}

/// `rows` reordered: clumps of `clump` consecutive entries (the last one may be shorter) are
/// shuffled as units and keep their inner order; `clump = 1` shuffles single rows.
pub fn shuffle_clumps(rows: &[u64], clump: usize, rng: &mut Xoshiro256PlusPlus) -> Vec<u64> {
    if clump <= 1 {
        let mut out = rows.to_vec();
        shuffle_in_place(&mut out, rng);
        return out;
    }
    let mut clumps: Vec<&[u64]> = rows.chunks(clump).collect();
    shuffle_in_place(&mut clumps, rng);
    clumps.concat()
}

/// The seed of epoch `epoch` of a shuffle seeded with `seed`: the two mixed so that
/// neighbouring epochs (and neighbouring seeds) give unrelated orders.
pub fn epoch_seed(seed: u64, epoch: u64) -> u64 {
    mix(seed ^ mix(epoch.wrapping_add(0x9e37_79b9_7f4a_7c15)))
}

/// Room for the `n` positions of an epoch's order in `T`, or `Error::Memory` naming the
/// size when the machine has not got it: checked before anything is allocated (an order of
/// 10^12 positions once asked for 8 TB and aborted the interpreter). Clumps need more beside
/// the positions: a slice per clump and the shuffled copy.
fn order_room<T>(n: u64, clump: usize) -> Result<Vec<T>> {
    let size = std::mem::size_of::<T>() as u64;
    let refuse = |bytes: Option<u64>| {
        let bytes = bytes.map_or("more than 2^64".into(), |b| b.to_string());
        Error::Memory(format!(
            "the order of an epoch of {n} positions takes {bytes} bytes ({size} a position), \
             more than the memory free; compute it position by position instead of holding it"
        ))
    };
    let clump_bytes = if clump > 1 {
        (n / clump as u64 + 1)
            .checked_mul(16)
            .and_then(|c| c.checked_add(n.checked_mul(8)?))
    } else {
        Some(0)
    };
    let bytes = n
        .checked_mul(size)
        .and_then(|b| b.checked_add(clump_bytes?));
    let len = usize::try_from(n).map_err(|_| refuse(bytes))?;
    let total = bytes
        .and_then(|b| usize::try_from(b).ok())
        .ok_or(refuse(bytes))?;
    crate::memory::check(total, "").map_err(|_| refuse(bytes))?;
    crate::memory::reserve(len).map_err(|_| refuse(bytes))
}

/// Positions `0..n` in the shuffled order of `epoch` (clumps of `clump` positions move as one).
pub fn epoch_order(n: u64, seed: u64, epoch: u64, clump: usize) -> Result<Vec<u64>> {
    let mut rng = generator(epoch_seed(seed, epoch));
    let mut positions = order_room::<u64>(n, clump)?;
    positions.extend(0..n);
    if clump <= 1 {
        // In place: one array of the table's length, not two.
        shuffle_in_place(&mut positions, &mut rng);
        return Ok(positions);
    }
    Ok(shuffle_clumps(&positions, clump, &mut rng))
}

/// `epoch_order` in 4-byte positions, for `n` up to 2^32.
pub fn epoch_order_narrow(n: u64, seed: u64, epoch: u64, clump: usize) -> Result<Vec<u32>> {
    let n32 = u32::try_from(n.saturating_sub(1)).map_err(|_| {
        Error::Value(format!(
            "{n} positions do not fit 4 bytes; ask for the order in 8-byte positions"
        ))
    })?;
    if n == 0 {
        return Ok(Vec::new());
    }
    if clump <= 1 {
        // The same swaps as `epoch_order`, on 4-byte positions.
        let mut positions = order_room::<u32>(n, clump)?;
        positions.extend(0..=n32);
        shuffle_in_place(&mut positions, &mut generator(epoch_seed(seed, epoch)));
        return Ok(positions);
    }
    let order = epoch_order(n, seed, epoch, clump)?;
    Ok(order.into_iter().map(|p| p as u32).collect())
}

/// How many rows each split gets. Exactly one of `ratios`, `counts`, `fixed` is given. The
/// rules are LanceDB's, so that a split of the same table has the same size in both:
/// - ratios: each `round(ratio * n)` (half away from zero); where the sizes add up to more
///   than `n`, one row comes off each split in turn from the first; where the ratios add up
///   to 1 (within half a row) and the sizes to less than `n`, one row goes to each in turn.
/// - counts: as given.
/// - fixed `k`: `n / k` rows each, rounded down (the remaining rows are left out).
pub fn split_sizes(
    n: u64,
    ratios: Option<&[f64]>,
    counts: Option<&[u64]>,
    fixed: Option<u64>,
) -> Result<Vec<u64>> {
    let given = [ratios.is_some(), counts.is_some(), fixed.is_some()];
    if given.iter().filter(|g| **g).count() != 1 {
        return Err(Error::Value(
            "Exactly one of 'ratios', 'counts', or 'fixed' must be provided (ratios= for \
             fractions of the rows, counts= for numbers of rows, fixed= for a number of equal \
             splits)"
                .into(),
        ));
    }
    let sizes = if let Some(ratios) = ratios {
        ratio_sizes(n, ratios)?
    } else if let Some(counts) = counts {
        if counts.is_empty() {
            return Err(Error::Value(
                "counts= is empty; give at least one count".into(),
            ));
        }
        let total = counts
            .iter()
            .try_fold(0u64, |a, &c| a.checked_add(c))
            .unwrap_or(u64::MAX);
        if total > n {
            return Err(Error::Value(format!(
                "Split counts specified {total} rows but only {n} are available (counts \
                 {counts:?})"
            )));
        }
        counts.to_vec()
    } else {
        let k = fixed.unwrap_or(0);
        if k == 0 {
            return Err(Error::Value("fixed= must be at least 1 split".into()));
        }
        // Checked before the sizes are made: fixed=10**12 must not allocate a size per split.
        if k > n {
            return Err(Error::Value(format!(
                "Split fixed config specified {k} splits but only {n} rows are available. \
                 Must have at least 1 row per split: ask for at most {n} splits"
            )));
        }
        let k = usize::try_from(k).map_err(|_| Error::Memory(format!("{k} splits")))?;
        crate::memory::filled(k, n / k as u64)?
    };
    if let Some(i) = sizes.iter().position(|&s| s == 0) {
        return Err(Error::Value(format!(
            "Split counts must be greater than 0: split {i} would be empty with {n} rows to \
             split ({sizes:?}); ask for fewer or larger splits"
        )));
    }
    Ok(sizes)
}

fn ratio_sizes(n: u64, ratios: &[f64]) -> Result<Vec<u64>> {
    if ratios.is_empty() {
        return Err(Error::Value(
            "ratios= is empty; give at least one ratio".into(),
        ));
    }
    if let Some(r) = ratios
        .iter()
        .find(|r| !(r.is_finite() && **r > 0.0 && **r <= 1.0))
    {
        return Err(Error::Value(format!(
            "Split percentages must be between 0.0 and 1.0: ratio {r} is not a fraction above 0"
        )));
    }
    if let Some(r) = ratios.iter().find(|r| **r * (n as f64) < 1.0) {
        return Err(Error::Value(format!(
            "One of the splits has {}% of {n} rows which rounds to 0 rows",
            r * 100.0
        )));
    }
    let total: f64 = ratios.iter().sum();
    if total > 1.0 {
        return Err(Error::Value(format!(
            "Split percentages must sum to 1.0 or less: ratios {ratios:?} sum to {total}"
        )));
    }
    let mut sizes: Vec<u64> = ratios
        .iter()
        .map(|r| (r * n as f64).round() as u64)
        .collect();
    let mut excess = sizes.iter().sum::<u64>() as i128 - n as i128;
    let mut i = 0;
    while excess > 0 {
        if sizes[i] > 0 {
            sizes[i] -= 1;
            excess -= 1;
        }
        i = (i + 1) % sizes.len();
    }
    let whole = (n as f64 - total * n as f64).abs() < 0.5;
    let mut i = 0;
    while whole && excess < 0 {
        sizes[i] += 1;
        excess += 1;
        i = (i + 1) % sizes.len();
    }
    Ok(sizes)
}

/// Rows and their split ids: the first `sizes[0]` rows of `rows` go to split 0, and so on.
/// Rows past the sum of `sizes` are dropped.
fn cut(rows: &[u64], sizes: &[u64]) -> (Vec<u64>, Vec<u32>) {
    let mut out_rows = Vec::new();
    let mut ids = Vec::new();
    let mut at = 0usize;
    for (split, &size) in sizes.iter().enumerate() {
        let end = at + size as usize;
        out_rows.extend_from_slice(&rows[at..end]);
        #[allow(clippy::disallowed_methods)] // as many as the rows just copied from `rows`
        ids.extend(std::iter::repeat_n(split as u32, size as usize));
        at = end;
    }
    (out_rows, ids)
}

/// A random split: rows shuffled (in clumps when asked) and cut into `sizes`; each split's rows
/// come back in that shuffled order.
pub fn random_split(rows: &[u64], sizes: &[u64], seed: u64, clump: usize) -> (Vec<u64>, Vec<u32>) {
    // Each split keeps the shuffled order it was dealt in, as LanceDB's does: a split read
    // without a further `shuffle` is still in random order, never in storage order.
    let mut rng = generator(seed);
    cut(&shuffle_clumps(rows, clump, &mut rng), sizes)
}

/// A sequential split: the first rows to split 0, the next to split 1, and so on.
pub fn sequential_split(rows: &[u64], sizes: &[u64]) -> (Vec<u64>, Vec<u32>) {
    cut(rows, sizes)
}

/// Shuffle the rows of each split (in clumps when asked); splits stay grouped in id order.
pub fn shuffle_splits(rows: &[u64], ids: &[u32], seed: u64, clump: usize) -> (Vec<u64>, Vec<u32>) {
    let mut rng = generator(seed);
    let mut order: Vec<usize> = (0..rows.len()).collect();
    order.sort_by_key(|&i| ids[i]); // stable: rows keep their order within a split
    #[allow(clippy::disallowed_methods)] // the length of `rows`, held already
    let mut out_rows = Vec::with_capacity(rows.len());
    #[allow(clippy::disallowed_methods)] // the length of `rows`, held already
    let mut out_ids = Vec::with_capacity(rows.len());
    let mut start = 0;
    while start < order.len() {
        let id = ids[order[start]];
        let end = start + order[start..].iter().take_while(|&&i| ids[i] == id).count();
        let group: Vec<u64> = order[start..end].iter().map(|&i| rows[i]).collect();
        out_rows.extend(shuffle_clumps(&group, clump, &mut rng));
        #[allow(clippy::disallowed_methods)] // a split's rows, held already
        out_ids.extend(std::iter::repeat_n(id, end - start));
        start = end;
    }
    (out_rows, out_ids)
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;
const NULL_MARK: u64 = 0x6e75_6c6c_6e75_6c6c;

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes
        .iter()
        .fold(FNV_OFFSET, |h, &b| (h ^ b as u64).wrapping_mul(FNV_PRIME))
}

pub(crate) fn mix(mut z: u64) -> u64 {
    // splitmix64's finaliser: spreads FNV's low-entropy high bits.
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A stable 64-bit hash of each value of `array`, folded into `hashes`.
fn fold_column(array: &ArrayRef, name: &str, hashes: &mut [u64]) -> Result<()> {
    // The hash of value `$i` of a `$t` column: its `$wide` value's 8 bytes.
    macro_rules! widened {
        ($t:ty, $wide:ty, $i:expr) => {
            fnv1a(&<$wide>::from(array.as_primitive::<$t>().value($i)).to_le_bytes())
        };
    }
    let value_hash = |i: usize| -> Result<u64> {
        if array.is_null(i) {
            return Ok(NULL_MARK);
        }
        Ok(match array.data_type() {
            DataType::Boolean => fnv1a(&[array.as_boolean().value(i) as u8]),
            DataType::Utf8 => fnv1a(array.as_string::<i32>().value(i).as_bytes()),
            DataType::LargeUtf8 => fnv1a(array.as_string::<i64>().value(i).as_bytes()),
            DataType::Utf8View => fnv1a(array.as_string_view().value(i).as_bytes()),
            DataType::Binary => fnv1a(array.as_binary::<i32>().value(i)),
            DataType::LargeBinary => fnv1a(array.as_binary::<i64>().value(i)),
            DataType::BinaryView => fnv1a(array.as_binary_view().value(i)),
            DataType::FixedSizeBinary(_) => fnv1a(array.as_fixed_size_binary().value(i)),
            // Numbers by value, whatever their width: a key keeps its split when its column
            // goes from int32 to int64, or float32 to float64 (as 8 bytes, what int64 and
            // float64 keys always hashed as).
            DataType::Int8 => widened!(Int8Type, i64, i),
            DataType::Int16 => widened!(Int16Type, i64, i),
            DataType::Int32 => widened!(Int32Type, i64, i),
            DataType::UInt8 => widened!(UInt8Type, u64, i),
            DataType::UInt16 => widened!(UInt16Type, u64, i),
            DataType::UInt32 => widened!(UInt32Type, u64, i),
            DataType::Float16 => widened!(Float16Type, f64, i),
            DataType::Float32 => widened!(Float32Type, f64, i),
            dt if dt.is_primitive() => {
                let w = dt.primitive_width().expect("primitive types have a width");
                let data = array.to_data();
                let start = (data.offset() + i) * w;
                fnv1a(&data.buffers()[0].as_slice()[start..start + w])
            }
            other => {
                return Err(Error::Type(format!(
                    "column '{name}' is {other}; split_hash takes number, string, binary and \
                     bool columns"
                )))
            }
        })
    };
    for (i, h) in hashes.iter_mut().enumerate() {
        *h = mix(*h ^ value_hash(i)?);
    }
    Ok(())
}

/// The stable hash of each row of `batches` (all their columns).
pub fn row_hashes(batches: &[RecordBatch]) -> Result<Vec<u64>> {
    let mut out = Vec::new();
    for batch in batches {
        #[allow(clippy::disallowed_methods)] // one a row of a batch held already
        let mut hashes = vec![0u64; batch.num_rows()];
        for (field, column) in batch.schema().fields().iter().zip(batch.columns()) {
            fold_column(column, field.name(), &mut hashes)?;
        }
        out.extend(hashes);
    }
    Ok(out)
}

/// A hash split: each row's split depends only on its key hash, so it never moves when other
/// rows are added or removed. `weights[i]` buckets out of `sum(weights) + discard` go to split
/// `i`; the `discard` buckets drop the row.
pub fn hash_split(
    rows: &[u64],
    hashes: &[u64],
    weights: &[u64],
    discard: u64,
) -> Result<(Vec<u64>, Vec<u32>)> {
    if weights.is_empty() || weights.contains(&0) {
        return Err(Error::Value(format!(
            "split_weights {weights:?} must be one or more weights above 0"
        )));
    }
    let total = weights
        .iter()
        .try_fold(discard, |a, &w| a.checked_add(w))
        .ok_or_else(|| Error::Value(format!("split_weights {weights:?} and discard_weight {discard} add up past 2**64; use smaller weights")))?;
    #[allow(clippy::disallowed_methods)] // one a weight given
    let mut bounds = Vec::with_capacity(weights.len());
    let mut acc = 0;
    for w in weights {
        acc += w;
        bounds.push(acc);
    }
    let mut out_rows = Vec::new();
    let mut ids = Vec::new();
    for (&row, &h) in rows.iter().zip(hashes) {
        let bucket = h % total;
        if let Some(split) = bounds.iter().position(|&b| bucket < b) {
            out_rows.push(row);
            ids.push(split as u32);
        }
    }
    Ok((out_rows, ids))
}

/// Split sizes that fit in `n` rows together.
pub fn check_sizes(sizes: &[u64], n: usize) -> Result<()> {
    let total = sizes.iter().try_fold(0u64, |a, &c| a.checked_add(c));
    if total.is_none_or(|t| t > n as u64) {
        return Err(Error::Value(format!(
            "split sizes {sizes:?} exceed the {n} rows"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn golden_epoch_orders() {
        let order = |n, epoch| epoch_order(n, 42, epoch, 1).unwrap();
        assert_eq!(order(8, 0), GOLDEN_EPOCH_0);
        assert_eq!(order(8, 1), GOLDEN_EPOCH_1);
        assert_ne!(order(1000, 0), order(1000, 1));
    }

    #[test]
    fn an_order_larger_than_memory_is_an_error_naming_its_size() {
        for clump in [1, 4] {
            match epoch_order(1_000_000_000_000, 0, 0, clump) {
                Err(Error::Memory(msg)) => assert!(
                    msg.contains("of 1000000000000 positions") && msg.contains(" bytes "),
                    "{msg}"
                ),
                other => panic!("expected a memory error, got {:?}", other.map(|o| o.len())),
            }
        }
        assert!(matches!(
            epoch_order(u64::MAX, 0, 0, 3),
            Err(Error::Memory(_))
        ));
        let narrow = epoch_order_narrow(u64::from(u32::MAX) + 2, 0, 0, 1);
        assert!(matches!(narrow, Err(Error::Value(_))));
    }
    #[test]
    fn narrow_epoch_orders_are_the_same_orders() {
        for (n, clump) in [(8, 1), (1000, 1), (1000, 7), (0, 1), (1, 3)] {
            for epoch in 0..3 {
                let wide = epoch_order(n, 42, epoch, clump).unwrap();
                let narrow = epoch_order_narrow(n, 42, epoch, clump).unwrap();
                let narrow: Vec<u64> = narrow.into_iter().map(u64::from).collect();
                assert_eq!(narrow, wide, "n={n} clump={clump} epoch={epoch}");
            }
        }
    }
    const GOLDEN_EPOCH_0: [u64; 8] = [2, 5, 3, 6, 4, 0, 1, 7];
    const GOLDEN_EPOCH_1: [u64; 8] = [1, 3, 4, 7, 5, 2, 0, 6];

    #[test]
    fn golden_shuffle() {
        let rows: Vec<u64> = (0..10).collect();
        let mut rng = generator(42);
        let out = shuffle_clumps(&rows, 1, &mut rng);
        assert_eq!(out, GOLDEN_42);
        let mut rng = generator(7);
        let out = shuffle_clumps(&rows, 3, &mut rng);
        assert_eq!(out, GOLDEN_7_CLUMP3);
    }
    const GOLDEN_42: [u64; 10] = [5, 3, 1, 0, 9, 6, 4, 7, 2, 8];
    const GOLDEN_7_CLUMP3: [u64; 10] = [6, 7, 8, 3, 4, 5, 9, 0, 1, 2];

    #[test]
    fn below_is_in_range_and_covers_it() {
        let mut rng = generator(1);
        let mut seen = [0u32; 7];
        for _ in 0..7000 {
            seen[below(&mut rng, 7) as usize] += 1;
        }
        assert!(seen.iter().all(|&c| c > 800), "{seen:?}");
    }

    #[test]
    fn sizes_from_ratios_counts_fixed() {
        assert_eq!(
            split_sizes(10, Some(&[0.8, 0.2]), None, None).unwrap(),
            vec![8, 2]
        );
        assert_eq!(
            split_sizes(10, Some(&[0.5, 0.3]), None, None).unwrap(),
            vec![5, 3]
        );
        assert_eq!(
            split_sizes(10, None, Some(&[3, 3]), None).unwrap(),
            vec![3, 3]
        );
        // LanceDB's rules: fixed rounds down; rounding that overshoots takes a row off the
        // first splits, rounding that falls short of ratios summing to 1 gives them one.
        assert_eq!(split_sizes(10, None, None, Some(3)).unwrap(), vec![3, 3, 3]);
        assert_eq!(
            split_sizes(10, Some(&[0.25, 0.75]), None, None).unwrap(),
            vec![2, 8]
        );
        assert_eq!(
            split_sizes(10, Some(&[0.15, 0.85]), None, None).unwrap(),
            vec![1, 9]
        );
        assert_eq!(
            split_sizes(10, Some(&[0.33, 0.33, 0.34]), None, None).unwrap(),
            vec![4, 3, 3]
        );
        assert_eq!(
            split_sizes(70, Some(&[0.3, 0.41]), None, None).unwrap(),
            vec![21, 29]
        );
        assert!(split_sizes(10, Some(&[0.8, 0.3]), None, None).is_err());
        assert!(split_sizes(10, None, Some(&[8, 3]), None).is_err());
        assert!(split_sizes(10, Some(&[0.99, 0.01]), None, None).is_err());
        assert!(split_sizes(10, Some(&[0.05, 0.95]), None, None).is_err());
        assert!(split_sizes(10, None, None, None).is_err());
        assert!(split_sizes(10, Some(&[0.5]), Some(&[1]), None).is_err());
    }

    #[test]
    fn random_split_partitions() {
        let rows: Vec<u64> = (0..100).collect();
        let (r, ids) = random_split(&rows, &[70, 20], 3, 1);
        assert_eq!(r.len(), 90);
        assert_eq!(ids.iter().filter(|&&i| i == 0).count(), 70);
        let mut seen = r.clone();
        seen.sort();
        seen.dedup();
        assert_eq!(seen.len(), 90);
    }

    #[test]
    fn sums_that_overflow_are_refused() {
        assert!(split_sizes(10, None, Some(&[u64::MAX, 2]), None).is_err());
        // Refused before a size per split is allocated (this would be 8 TB).
        let err = split_sizes(1000, None, None, Some(1_000_000_000_000)).unwrap_err();
        assert!(err.to_string().contains("at most 1000 splits"), "{err}");
        assert!(check_sizes(&[u64::MAX, 2], 10).is_err());
        assert!(hash_split(&[0], &[0], &[1 << 63, 1 << 63], 0).is_err());
    }

    #[test]
    fn hash_split_is_stable_per_row() {
        let hashes: Vec<u64> = (0..1000u64).map(mix).collect();
        let rows: Vec<u64> = (0..1000).collect();
        let (r1, i1) = hash_split(&rows, &hashes, &[9, 1], 0).unwrap();
        let (r2, i2) = hash_split(&rows[500..], &hashes[500..], &[9, 1], 0).unwrap();
        let first: std::collections::HashMap<u64, u32> = r1.into_iter().zip(i1).collect();
        for (r, i) in r2.into_iter().zip(i2) {
            assert_eq!(first[&r], i);
        }
    }
}
