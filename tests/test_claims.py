"""Claims are computed from numbers: orders, ties and agreement with the published order."""
import yaml

from bitlens import claims
from bitlens.targets import targets_path

PAPER_LIKE = {"hash": {"recall@1": 0.348, "recall@10": 0.730},
              "bebr": {"recall@1": 0.360, "recall@10": 0.751},
              "float": {"recall@1": 0.361, "recall@10": 0.744}}


def test_order_is_highest_first_and_ties_are_grouped():
    assert claims.ranked({"a": 0.2, "b": 0.5, "c": 0.3}) == [["b"], ["c"], ["a"]]
    assert claims.ranked({"a": 0.50001, "b": 0.5, "c": None}) == [["a", "b"]]  # equal at 4 decimals; None dropped
    assert claims.order_text({"x": 0.25, "y": 0.75}) == "y (0.7500) > x (0.2500)"


def test_orders_at_each_k_come_from_the_values_not_from_a_fixed_list():
    orders = claims.recall_orders(PAPER_LIKE, PAPER_LIKE, ks=(1, 10))
    assert orders[0]["paper"] == [["float"], ["bebr"], ["hash"]]
    assert orders[1]["paper"] == [["bebr"], ["float"], ["hash"]]  # the order changes with K
    assert all(o["agree"] for o in orders)


def test_sentences_say_whether_and_where_the_orders_differ():
    ours = {"hash": {"recall@1": 0.1, "recall@10": 0.5}, "bebr": {"recall@1": 0.3, "recall@10": 0.6},
            "float": {"recall@1": 0.2, "recall@10": 0.7}}
    s = claims.recall_order_sentences(ours, PAPER_LIKE, ks=(1, 10))
    assert s[0] == ("R@1: ours bebr (0.3000) > float (0.2000) > hash (0.1000); paper float (0.361) > bebr (0.360) > "
                    "hash (0.348): a different order (the paper has float above bebr, we have it below).")
    assert s[1].endswith("a different order (the paper has bebr above float, we have it below).")
    same = claims.recall_order_sentences(PAPER_LIKE, PAPER_LIKE, ks=(10,), comparable=False)
    assert same[0].endswith("the same order.") and "orientation only" in same[1]
    assert claims.agreement_summary(ours, PAPER_LIKE, ks=(1, 10)) == {"R@1": False, "R@10": False}


def test_the_published_orders_read_from_the_targets_file():
    rows = yaml.safe_load(targets_path().read_text())["bebr"]["rows"]
    orders = claims.recall_orders(rows, rows)
    # the published table is not monotone in K: R@1 and R@10 rank bebr and float differently
    assert orders[0]["paper"] != orders[2]["paper"]


def test_recall_table_reads_stage_metrics():
    rows = {"hash": {"i2t": {"expected": {"r1": 0.1, "r5": 0.2, "r10": 0.3, "r50": 0.9}}}}
    assert claims.recall_table(rows, "expected") == {"hash": {"recall@1": 0.1, "recall@5": 0.2, "recall@10": 0.3}}
