"""LFW pair lists: folds, same and different pairs, and the people they name."""

from model.evaluation.protocols import Pair, pair_people, read_pairs

# View 2 layout with 2 folds of 1 same + 1 different pair.
PAIRS = "2\t1\nAnn_Lee\t1\t2\nAnn_Lee\t3\tBo_Yu\t1\nCy_Oz\t2\t4\nDe_Ma\t1\tCy_Oz\t1\n"


def test_pairs_are_read_per_fold_with_their_image_paths(tmp_path):
    path = tmp_path / "pairs.txt"
    path.write_text(PAIRS)
    pairs = read_pairs(path)
    assert pairs[0] == Pair("Ann_Lee/Ann_Lee_0001.jpg", "Ann_Lee/Ann_Lee_0002.jpg", True, 0)
    assert pairs[1] == Pair("Ann_Lee/Ann_Lee_0003.jpg", "Bo_Yu/Bo_Yu_0001.jpg", False, 0)
    assert [(p.same, p.fold) for p in pairs[2:]] == [(True, 1), (False, 1)]


def test_pair_people_are_everyone_either_image_shows(tmp_path):
    path = tmp_path / "pairs.txt"
    path.write_text(PAIRS)
    pairs = read_pairs(path)
    assert pair_people(pairs) == {"Ann_Lee", "Bo_Yu", "Cy_Oz", "De_Ma"}
    assert pair_people([p for p in pairs if p.fold == 1]) == {"Cy_Oz", "De_Ma"}
