"""kernels/philox.py: Philox word for word against NumPy's implementation and the Random123
known answers; the compiled CPU loop against the portable reference."""
import numpy as np
import pytest

from kernels import numba_philox, philox

# Random123's kat_vectors for philox4x32-10 (counter words, key words, output words)
KAT_4X32 = [
    ((0x00000000, 0x00000000, 0x00000000, 0x00000000), (0x00000000, 0x00000000),
     (0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8)),
    ((0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff), (0xffffffff, 0xffffffff),
     (0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd)),
    ((0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344), (0xa4093822, 0x299f31d0),
     (0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1)),
]


@pytest.mark.parametrize("counter, key, expected", KAT_4X32)
def test_philox4x32_gives_random123s_known_answers(counter, key, expected):
    words = philox.philox4x32(tuple(np.array([c], dtype=np.uint32) for c in counter), key)
    assert [int(w[0]) for w in words] == list(expected)


@pytest.mark.parametrize("key, counter", [
    ((0, 0), (0, 0, 0, 0)),
    ((0x0123456789ABCDEF, 0xFEDCBA9876543210), (5, 6, 7, 8)),
    ((2 ** 64 - 1, 12345), (2 ** 64 - 9, 2 ** 63, 1, 2 ** 64 - 1)),
])
def test_the_rounds_match_numpys_philox_word_for_word(key, counter):
    """NumPy's np.random.Philox is Philox4x64-10: the same round function with 64-bit
    words. Its raw output for (key, counter) is block counter+1, +2, ... (it increments
    before it computes), four words each."""
    bits = np.random.Philox(key=np.array(key, dtype=np.uint64),
                            counter=np.array(counter, dtype=np.uint64))
    raw = bits.random_raw(4 * 6)
    blocks = 6
    c0 = np.array([(counter[0] + 1 + b) % 2 ** 64 for b in range(blocks)], dtype=np.uint64)
    carry = [(counter[0] + 1 + b) >= 2 ** 64 for b in range(blocks)]
    c1 = np.array([(counter[1] + k) % 2 ** 64 for k in carry], dtype=np.uint64)
    rest = [np.full(blocks, counter[i], dtype=np.uint64) for i in (2, 3)]
    words = philox.philox4x64((c0, c1, *rest), key)
    np.testing.assert_array_equal(np.stack(words, axis=1).reshape(-1), raw)


def test_mulhi64_is_the_high_half_of_the_exact_product():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 2 ** 64, size=200, dtype=np.uint64, endpoint=False)
    a[:3] = (0, 1, 2 ** 64 - 1)
    for m in (1, 3, 2 ** 32 - 1, 2 ** 32, 0xD2E7470EE14C6C93, 2 ** 64 - 1):
        got = philox.mulhi64(a, m)
        assert [int(g) for g in got] == [(int(v) * m) >> 64 for v in a]


def test_random_bits_lay_out_blocks_in_order():
    key = (7, 11)
    start = 2 ** 32 - 2                     # crosses into the counter's second word
    words = philox.random_bits(np, key, start, 4 * 4 - 3)
    for b in range(4):
        index = start + b
        counter = tuple(np.array([v], dtype=np.uint32)
                        for v in (index % 2 ** 32, index >> 32, 0, 0))
        block = [int(w[0]) for w in philox.philox4x32(counter, key)]
        assert words[4 * b:4 * b + 4].tolist() == block[:len(words[4 * b:4 * b + 4])]


@pytest.mark.parametrize("start, nwords", [(0, 1), (0, 4), (3, 4099), (2 ** 32 - 1, 9),
                                           (2 ** 40 + 17, 64)])
def test_the_compiled_loop_gives_the_reference_words(start, nwords):
    for key in ((0, 0), (0xFFFFFFFF, 0x12345678)):
        np.testing.assert_array_equal(numba_philox.random_bits(key, start, nwords),
                                      philox.random_bits(np, key, start, nwords))
