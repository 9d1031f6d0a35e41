//! The bitshuffle + LZ4 HDF5 filter (id 32008), as written by DECTRIS detectors (ARINA, QUADRO,
//! EIGER) and by `hdf5plugin.Bitshuffle(cname="lz4")`.
//!
//! A chunk is: the uncompressed size in bytes (u64, big-endian), the block size in bytes (u32,
//! big-endian), then the blocks. The elements are cut into blocks of `block` elements; a last, shorter
//! block is rounded down to a multiple of 8 elements; each block is stored as its compressed length
//! (u32, big-endian) and an LZ4 block of its bit-transposed bytes. The `n % 8` elements that remain
//! after the last block are stored as they are.
//!
//! The bit transposition of a block of `n` elements of `s` bytes: bit `k` of byte `j` of element `i`
//! is bit `i % 8` of byte `i / 8` of row `8·j + k`, each row being `n / 8` bytes long.

/// The filter id registered for bitshuffle with The HDF Group.
pub const FILTER_BITSHUFFLE: u16 = 32008;

/// Decodes one bitshuffle+LZ4 chunk of `elem_size`-byte elements; the error says what is corrupt.
///
/// ```
/// # use tessera::dataset::formats::hdf5::bitshuffle::decode;
/// // 3 uint16 elements: no whole block of 8, so all three are stored as they are
/// let chunk = [0, 0, 0, 0, 0, 0, 0, 6, 0, 0, 32, 0, 1, 0, 2, 0, 3, 0];
/// assert_eq!(decode(&chunk, 2).unwrap(), vec![1, 0, 2, 0, 3, 0]);
/// ```
pub fn decode(chunk: &[u8], elem_size: usize) -> Result<Vec<u8>, String> {
    let bad = |what: String| format!("corrupt bitshuffle/LZ4 chunk: {what}");
    if chunk.len() < 12 || elem_size == 0 {
        return Err(bad(format!("{} bytes is shorter than its 12-byte header", chunk.len())));
    }
    let total = u64::from_be_bytes(chunk[..8].try_into().expect("8 bytes")) as usize;
    let block_bytes = u32::from_be_bytes(chunk[8..12].try_into().expect("4 bytes")) as usize;
    if !total.is_multiple_of(elem_size) || !block_bytes.is_multiple_of(elem_size) {
        return Err(bad(format!("sizes {total}/{block_bytes} are not whole {elem_size}-byte elements")));
    }
    // a chunk never decodes to more than a few hundred MiB; refuse absurd headers before allocating
    if total > (1 << 31) {
        return Err(bad(format!("claims {total} uncompressed bytes")));
    }
    let n = total / elem_size;
    let block = block_bytes / elem_size;
    if block == 0 || !block.is_multiple_of(8) {
        return Err(bad(format!("block of {block} elements is not a positive multiple of 8")));
    }
    let mut out = vec![0u8; total];
    let mut scratch = vec![0u8; block * elem_size];
    let mut at = 12;
    let mut done = 0;
    let last = (n % block) - (n % block) % 8;
    let blocks = std::iter::repeat_n(block, n / block).chain((last > 0).then_some(last));
    for size in blocks {
        let Some(len) = chunk.get(at..at + 4) else {
            return Err(bad(format!("ends at byte {at}, inside the block of element {done}")));
        };
        let len = u32::from_be_bytes(len.try_into().expect("4 bytes")) as usize;
        let Some(body) = chunk.get(at + 4..at + 4 + len) else {
            return Err(bad(format!("block at byte {at} claims {len} bytes; the chunk has {}", chunk.len())));
        };
        let bytes = size * elem_size;
        let got = lz4_flex::block::decompress_into(body, &mut scratch[..bytes])
            .map_err(|e| bad(format!("LZ4 block at byte {at}: {e}")))?;
        if got != bytes {
            return Err(bad(format!("LZ4 block at byte {at} gave {got} bytes, expected {bytes}")));
        }
        untranspose(&scratch[..bytes], &mut out[done * elem_size..(done + size) * elem_size], elem_size);
        at += 4 + len;
        done += size;
    }
    let rest = (n - done) * elem_size;
    match chunk.get(at..at + rest) {
        Some(tail) => out[done * elem_size..].copy_from_slice(tail),
        None => return Err(bad(format!("the {} trailing elements are missing", n - done))),
    }
    Ok(out)
}

/// Undoes the bit transposition of one block (`src.len() / elem_size` elements, a multiple of 8).
fn untranspose(src: &[u8], dst: &mut [u8], elem_size: usize) {
    let n = src.len() / elem_size;
    let row = n / 8;
    for j in 0..elem_size {
        for g in 0..row {
            // the 8 rows of byte j hold, at byte g, bit k of byte j of elements 8g..8g+8
            let mut m = 0u64;
            for k in 0..8 {
                m |= (src[(8 * j + k) * row + g] as u64) << (8 * k);
            }
            let t = transpose8(m);
            for b in 0..8 {
                dst[(8 * g + b) * elem_size + j] = (t >> (8 * b)) as u8;
            }
        }
    }
}

/// Transposes an 8×8 bit matrix held in a u64 (byte `r`, bit `c` ↔ byte `c`, bit `r`).
#[inline]
fn transpose8(mut x: u64) -> u64 {
    let mut t = (x ^ (x >> 7)) & 0x00AA_00AA_00AA_00AA;
    x ^= t ^ (t << 7);
    t = (x ^ (x >> 14)) & 0x0000_CCCC_0000_CCCC;
    x ^= t ^ (t << 14);
    t = (x ^ (x >> 28)) & 0x0000_0000_F0F0_F0F0;
    x ^= t ^ (t << 28);
    x
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The forward transform, written the slow way, to check the fast inverse.
    fn transpose(src: &[u8], elem_size: usize) -> Vec<u8> {
        let n = src.len() / elem_size;
        let mut out = vec![0u8; src.len()];
        for i in 0..n {
            for j in 0..elem_size {
                for k in 0..8 {
                    let bit = (src[i * elem_size + j] >> k) & 1;
                    out[(8 * j + k) * (n / 8) + i / 8] |= bit << (i % 8);
                }
            }
        }
        out
    }

    fn encode(data: &[u8], elem_size: usize, block: usize) -> Vec<u8> {
        let n = data.len() / elem_size;
        let mut out = (data.len() as u64).to_be_bytes().to_vec();
        out.extend(((block * elem_size) as u32).to_be_bytes());
        let mut done = 0;
        while n - done >= 8 {
            let size = (n - done).min(block) / 8 * 8;
            let t = transpose(&data[done * elem_size..(done + size) * elem_size], elem_size);
            let c = lz4_flex::block::compress(&t);
            out.extend((c.len() as u32).to_be_bytes());
            out.extend(c);
            done += size;
        }
        out.extend(&data[done * elem_size..]);
        out
    }

    #[test]
    fn round_trips_every_element_size_and_remainder() {
        for elem_size in [1, 2, 4, 8] {
            for n in [0, 5, 8, 64, 100, 1003] {
                let data: Vec<u8> = (0..n * elem_size).map(|i| (i * 37 % 251) as u8).collect();
                let enc = encode(&data, elem_size, 64);
                assert_eq!(decode(&enc, elem_size).unwrap(), data, "elem {elem_size}, n {n}");
            }
        }
    }

    #[test]
    fn truncated_or_corrupt_chunks_are_errors() {
        let data: Vec<u8> = (0..400).map(|i| i as u8).collect();
        let enc = encode(&data, 2, 64);
        for cut in [0, 11, 12, 20, enc.len() - 1] {
            assert!(decode(&enc[..cut], 2).is_err(), "cut at {cut}");
        }
        let mut bad = enc.clone();
        bad[8..12].copy_from_slice(&3u32.to_be_bytes());
        assert!(decode(&bad, 2).is_err());
        let mut huge = enc;
        huge[..8].copy_from_slice(&u64::MAX.to_be_bytes());
        assert!(decode(&huge, 2).is_err());
    }
}
