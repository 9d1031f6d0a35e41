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
        lz4_block(body, &mut scratch[..bytes]).map_err(|e| bad(format!("LZ4 block at byte {at}: {e}")))?;
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

/// Decodes one LZ4 block into `out`, which it must fill exactly.
///
/// Written here rather than taken from `lz4_flex` because bitshuffled detector data is mostly long
/// runs (the zero high bits of small counts): matches that overlap their source are copied by
/// doubling spans instead of byte by byte, which made this filter ~2× faster end to end.
pub fn lz4_block(src: &[u8], out: &mut [u8]) -> Result<(), String> {
    let (mut i, mut o) = (0usize, 0usize);
    let length = |i: &mut usize, mut n: usize| -> Result<usize, String> {
        loop {
            let b = *src.get(*i).ok_or("length runs past the end")?;
            *i += 1;
            n += b as usize;
            if b != 255 {
                return Ok(n);
            }
        }
    };
    loop {
        let token = *src.get(i).ok_or("ends before its last literals")?;
        i += 1;
        let mut lit = (token >> 4) as usize;
        if lit == 15 {
            lit = length(&mut i, lit)?;
        }
        let (Some(from), Some(to)) = (src.get(i..i + lit), out.get_mut(o..o + lit)) else {
            return Err(format!("{lit} literals at {i} run past the input or the output"));
        };
        to.copy_from_slice(from);
        i += lit;
        o += lit;
        if i == src.len() {
            break;
        }
        let offset = match src.get(i..i + 2) {
            Some(b) => u16::from_le_bytes([b[0], b[1]]) as usize,
            None => return Err("match offset runs past the end".into()),
        };
        i += 2;
        let mut len = (token & 15) as usize;
        if len == 15 {
            len = length(&mut i, len)?;
        }
        len += 4;
        if offset == 0 || offset > o || o + len > out.len() {
            return Err(format!("match (offset {offset}, length {len}) at output {o} is out of bounds"));
        }
        // copy from `start`; each step copies what is already written, so spans double
        let start = o - offset;
        let mut done = 0;
        while done < len {
            let k = (len - done).min(o + done - start);
            out.copy_within(start..start + k, o + done);
            done += k;
        }
        o += len;
    }
    if o != out.len() {
        return Err(format!("gave {o} bytes, expected {}", out.len()));
    }
    Ok(())
}

/// Undoes the bit transposition of one block (`src.len() / elem_size` elements, a multiple of 8).
fn untranspose(src: &[u8], dst: &mut [u8], elem_size: usize) {
    let row = src.len() / elem_size / 8;
    if row == 0 {
        return;
    }
    // the 8 rows of byte j hold, at byte g, bit k of byte j of elements 8g..8g+8
    for (j, rows) in src.chunks_exact(8 * row).enumerate() {
        let r: [&[u8]; 8] = std::array::from_fn(|k| &rows[k * row..(k + 1) * row]);
        for (g, out) in dst.chunks_exact_mut(8 * elem_size).enumerate().take(row) {
            let m = u64::from_le_bytes([r[0][g], r[1][g], r[2][g], r[3][g], r[4][g], r[5][g], r[6][g], r[7][g]]);
            let t = transpose8(m).to_le_bytes();
            for (b, &v) in t.iter().enumerate() {
                out[b * elem_size + j] = v;
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
    fn lz4_blocks_decode_as_lz4_flex_and_refuse_garbage() {
        let data: Vec<u8> = (0..5000u32).map(|i| if i % 700 < 600 { 0 } else { (i * 7 % 13) as u8 }).collect();
        let c = lz4_flex::block::compress(&data);
        let mut out = vec![0u8; data.len()];
        lz4_block(&c, &mut out).unwrap();
        assert_eq!(out, data);
        assert!(lz4_block(&c, &mut vec![0u8; data.len() - 1]).is_err());
        assert!(lz4_block(&c[..c.len() - 3], &mut out).is_err());
        let mut bad = c.clone();
        for b in bad.iter_mut().skip(1).step_by(3) {
            *b = 0xff;
        }
        assert!(lz4_block(&bad, &mut out).is_err());
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
