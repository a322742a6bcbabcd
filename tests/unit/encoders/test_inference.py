"""InferenceEncoder: a card's networks behind NumPy, combined as the fused encoder combines them,
checked against hand-computed values."""

import numpy as np
import pytest

from model.encoders.inference import InferenceEncoder


def constant(vector: list[float]):
    """A network whose embedding of a chip is `vector` times the chip's first pixel (red, top left)."""

    def network(chips: np.ndarray) -> list[np.ndarray]:
        return [chips[:, 0, 0, :1] * np.array(vector, dtype=np.float32)]

    return network


def test_a_single_network_s_embedding_is_its_raw_output_with_its_norm():
    encoder = InferenceEncoder([constant([3.0, 4.0])])
    raw, norms = encoder.embed_with_norms(np.full((2, 3, 4, 4), 2.0, dtype=np.float32))
    assert raw.tolist() == [[6.0, 8.0], [6.0, 8.0]]
    assert norms.tolist() == [[10.0], [10.0]]


def test_members_see_their_own_chips_and_are_normalised_and_weighted():
    encoder = InferenceEncoder([constant([3.0, 4.0]), constant([0.0, 2.0, 0.0])], [1.0, 0.5])
    first, second = np.ones((2, 3, 4, 4), np.float32), np.full((2, 3, 6, 6), 7.0, np.float32)
    raw, norms = encoder.embed_with_norms(first, second)
    assert raw.dtype == np.float32 and raw.shape == (2, 5)
    assert raw[0].tolist() == pytest.approx([0.6, 0.8, 0.0, 0.5, 0.0])
    assert norms[0].tolist() == pytest.approx([5.0, 14.0])


def test_a_zero_embedding_stays_zero():
    encoder = InferenceEncoder([constant([1.0]), constant([1.0])], [1.0, 1.0])
    raw = encoder(np.zeros((1, 3, 2, 2), np.float32), np.ones((1, 3, 2, 2), np.float32))
    assert raw.tolist() == [[0.0, 1.0]]


def test_mirrored_chips_are_flipped_left_to_right_in_the_same_pass():
    calls = []

    def first_pixel(chips: np.ndarray) -> list[np.ndarray]:
        calls.append(len(chips))
        return [chips[:, 0, 0, :1]]

    chips = np.zeros((2, 3, 2, 3), np.float32)
    chips[:, 0, 0, 0], chips[:, 0, 0, -1] = [1.0, 2.0], [5.0, 6.0]
    plain, mirrored = InferenceEncoder([first_pixel]).embed_with_mirror([chips])
    assert plain.ravel().tolist() == [1.0, 2.0] and mirrored.ravel().tolist() == [5.0, 6.0]
    assert calls == [4]


def test_mismatched_networks_weights_and_batches_are_refused():
    with pytest.raises(ValueError, match="fusion weights"):
        InferenceEncoder([constant([1.0])], [1.0, 2.0])
    with pytest.raises(ValueError, match="fusion weights"):
        InferenceEncoder([constant([1.0]), constant([1.0])])
    with pytest.raises(ValueError, match="chip batches"):
        InferenceEncoder([constant([1.0])])(np.ones((1, 3, 2, 2)), np.ones((1, 3, 2, 2)))
