"""Search expressions and search spaces (spec section 9): parsing, sampling ranges, shapes, grids."""

from __future__ import annotations

import math
import subprocess
import sys
import warnings

import numpy as np
import pytest
import yaml

from jupyter_avml.errors import ConfigError
from jupyter_avml.sweep.space import (
    MAX_GRID_SIZE,
    Choice,
    LogUniform,
    LogUniformBoundsWarning,
    QUniform,
    SearchSpace,
    Uniform,
    choice,
    lognormal,
    loguniform,
    normal,
    parse_expression,
    qlognormal,
    qloguniform,
    qnormal,
    quantize,
    quniform,
    randint,
    uniform,
)

# One of each expression kind, written as a user would.
EXAMPLES = [
    ("choice('sgd', 'adam', 'adamw')", choice("sgd", "adam", "adamw")),
    ('choice("yolov5", 1, 0.5)', choice("yolov5", 1, 0.5)),
    ("choice([16, 32])", choice(16, 32)),
    ("choice([[3, 2], [4, 3]])", choice([3, 2], [4, 3])),
    ("randint(5)", randint(5)),
    ("uniform(0.001, 0.01)", uniform(0.001, 0.01)),
    ("quniform(8, 64, 8)", quniform(8, 64, 8)),
    ("loguniform(-9.21, -2.3)", loguniform(-9.21, -2.3)),
    ("qloguniform(2, 6, 4)", qloguniform(2, 6, 4)),
    ("normal(0.5, 0.1)", normal(0.5, 0.1)),
    ("qnormal(10, 3, 2)", qnormal(10, 3, 2)),
    ("lognormal(-3, 0.5)", lognormal(-3, 0.5)),
    ("qlognormal(3, 0.5, 0.5)", qlognormal(3, 0.5, 0.5)),
]


@pytest.mark.parametrize("text, expected", EXAMPLES, ids=[t for t, _ in EXAMPLES])
def test_parse_expression_reads_every_kind_and_str_gives_it_back(text, expected):
    parsed = parse_expression(text)
    assert parsed == expected
    assert parse_expression(str(parsed)) == parsed
    assert repr(parsed) == str(parsed)
    assert parsed.kind == text.split("(")[0]


def test_parse_expression_accepts_keywords_and_spaces():
    assert parse_expression("  uniform( high=0.2 , low=0.1 ) ") == uniform(0.1, 0.2)
    assert parse_expression("quniform(0, 1, q=0.25)") == quniform(0, 1, 0.25)


@pytest.mark.parametrize("text", ["sgd", "(3, 2)", "3x2", "0.001", "", "yolov5", "choice"])
def test_plain_values_are_not_expressions(text):
    assert parse_expression(text) is None


@pytest.mark.parametrize("value", [0.01, 3, None, ["a"], {"a": 1}])
def test_non_strings_are_not_expressions(value):
    assert parse_expression(value) is None


@pytest.mark.parametrize("text, needle", [
    ("unifrom(0.1, 0.2)", "did you mean uniform()"),
    ("Choice('a', 'b')", "did you mean choice()"),
    ("logunifrom(-3, -1)", "did you mean loguniform()"),
    ("frobnicate(1)", "expressions are choice, randint"),
    ("uniform(0.1)", "uniform() takes 2 arguments (low, high), got 1"),
    ("uniform(0.1, 0.2, 0.3)", "takes 2 arguments"),
    ("quniform(0, 1)", "quniform() takes 3 arguments (low, high, q), got 2"),
    ("randint()", "randint() takes 1 argument (upper), got 0"),
    ("uniform(0.2, 0.1)", "low must be less than high"),
    ("uniform(0.1, 0.1)", "low must be less than high"),
    ("loguniform(-1, -3)", "low must be less than high"),
    ("quniform(0, 1, 0)", "q must be greater than 0"),
    ("qnormal(0, 1, -1)", "q must be greater than 0"),
    ("normal(0, 0)", "sigma must be greater than 0"),
    ("lognormal(0, -1)", "sigma must be greater than 0"),
    ("randint(0)", "upper must be an integer >= 1"),
    ("randint(2.5)", "upper must be an integer >= 1"),
    ("uniform('a', 1)", "low must be a finite number"),
    ("uniform(0, x)", "is not a literal value"),
    ("uniform(0, 1, low=0)", "uniform() got low twice"),
    ("uniform(0, 1", "cannot read search expression"),
    ("uniform(0, hi=1)", "has no argument 'hi'"),
    ("choice()", "needs at least one value"),
    ("loguniform(1, 1000)", "exp(1000) overflows; the bounds of loguniform are exponents"),
    ("qloguniform(1, 800, 4)", "exp(800) overflows"),
    ("choice(uniform(0, 1), 2)", "plain values or sub-space dicts"),
    ("choice({'model_name': 'yolov5'}, 3)", "must hold only dicts"),
])
def test_malformed_expressions_raise_config_error_naming_the_key(text, needle):
    with pytest.raises(ConfigError) as info:
        parse_expression(text, key="learning_rate")
    message = str(info.value)
    assert message.startswith("learning_rate: "), message
    assert needle in message, message
    assert info.value.field == "learning_rate"


@pytest.mark.parametrize("text", ["__import__('os').system('echo pwned')", "open('/etc/passwd')",
                                  "choice(open('x'))", "uniform(*[0, 1])", "choice(**{'a': 1})",
                                  "uniform(0, 1 + 1)", "choice([x for x in 'ab'])"])
def test_parse_expression_never_evaluates_code(text):
    with pytest.raises(ConfigError):
        parse_expression(text, key="x")


def test_text_that_does_not_start_like_a_call_is_a_plain_value_not_code():
    assert parse_expression("(lambda: 1)()") is None


def test_randint_accepts_an_integral_float():
    assert randint(3.0) == randint(3)


# -- sampling ranges ---------------------------------------------------------------------------------------
N = 4000


def _draw(dist, seed=0, n=N):
    rng = np.random.default_rng(seed)
    return [dist.sample(rng) for _ in range(n)]


def test_choice_draws_every_value_and_nothing_else():
    values = _draw(choice("a", 1, 0.5, [3, 2]))
    assert {repr(v) for v in values} == {"'a'", "1", "0.5", "[3, 2]"}
    # each value about a quarter of the time
    assert abs(sum(v == "a" for v in values) / N - 0.25) < 0.04


def test_choice_returns_copies_so_callers_cannot_change_the_space():
    dist = choice([[3, 2]])
    value = dist.sample(np.random.default_rng(0))
    value.append(9)
    assert dist.values == ([3, 2],)


def test_randint_covers_zero_to_upper_minus_one():
    values = _draw(randint(4))
    assert set(values) == {0, 1, 2, 3}
    assert all(type(v) is int for v in values)


def test_uniform_stays_in_its_bounds_and_spreads():
    values = np.array(_draw(uniform(0.001, 0.01)))
    assert values.min() >= 0.001 and values.max() <= 0.01
    assert abs(values.mean() - 0.0055) < 0.0003
    assert all(type(v) is float for v in values.tolist())


def test_quniform_gives_multiples_of_q_near_the_bounds():
    values = _draw(quniform(0.05, 0.95, 0.1))
    assert all(type(v) is float for v in values)
    assert all(abs(v / 0.1 - round(v / 0.1)) < 1e-9 for v in values)
    # round(uniform / q) * q: at most q/2 past the bounds, and exact decimals, not 0.30000000000000004
    assert min(values) >= 0.0 and max(values) <= 1.0
    assert set(values) <= {round(0.1 * k, 10) for k in range(11)}
    assert set(values) >= {0.1, 0.2, 0.3, 0.5, 0.9}


def test_quniform_with_an_integer_q_gives_ints():
    values = _draw(quniform(16, 128, 16))
    assert all(type(v) is int and v % 16 == 0 for v in values)
    assert set(values) == {16, 32, 48, 64, 80, 96, 112, 128}


def test_loguniform_bounds_are_exponents():
    values = np.array(_draw(loguniform(-9.21, -2.3)))
    assert values.min() >= math.exp(-9.21) and values.max() <= math.exp(-2.3)
    # uniform on the log scale: the median is exp of the middle exponent, far below the arithmetic middle
    assert abs(math.log(np.median(values)) - (-9.21 - 2.3) / 2) < 0.2


def test_qloguniform_gives_multiples_of_q_from_exponent_bounds():
    values = _draw(qloguniform(2, 6, 4))
    assert all(type(v) is int and v % 4 == 0 for v in values)
    assert min(values) >= 4 * round(math.exp(2) / 4) and max(values) <= 4 * round(math.exp(6) / 4)


def test_normal_and_qnormal():
    values = np.array(_draw(normal(0.5, 0.1)))
    assert abs(values.mean() - 0.5) < 0.01 and abs(values.std() - 0.1) < 0.01
    q = _draw(qnormal(10, 3, 2))
    assert all(type(v) is int and v % 2 == 0 for v in q)
    q_float = _draw(qnormal(1, 0.5, 0.25))
    assert all(float(v / 0.25).is_integer() for v in q_float)


def test_lognormal_and_qlognormal_are_positive():
    values = np.array(_draw(lognormal(-3, 0.5)))
    assert values.min() > 0
    assert abs(np.log(values).mean() + 3) < 0.05
    q = _draw(qlognormal(3, 0.5, 0.5))
    assert all(v >= 0 and float(v / 0.5).is_integer() for v in q)


def test_sampling_is_reproducible_with_a_seed():
    dist = uniform(0, 1)
    assert _draw(dist, seed=7, n=20) == _draw(dist, seed=7, n=20)
    assert _draw(dist, seed=7, n=20) != _draw(dist, seed=8, n=20)


@pytest.mark.parametrize("value, q, expected", [(0.30000000000000004, 0.1, 0.3), (0.149, 0.1, 0.1),
                                                 (47.0, 16, 48), (0.25, 0.5, 0.0), (0.75, 0.5, 1.0)])
def test_quantize(value, q, expected):
    assert quantize(value, q) == expected
    assert type(quantize(value, q)) is type(expected)


# -- the loguniform trap ---------------------------------------------------------------------------------
def test_loguniform_with_value_like_bounds_warns_with_the_real_range_and_the_fix():
    with pytest.warns(LogUniformBoundsWarning) as record:
        loguniform(0.0001, 0.1)
    message = str(record[0].message)
    assert "EXPONENTS" in message
    assert "between 1.0001 and 1.1052" in message  # what the user would really get
    assert "loguniform(-9.21, -2.303)" in message  # what to write instead
    assert issubclass(LogUniformBoundsWarning, UserWarning)


def test_loguniform_warning_also_fires_from_text_and_for_huge_exponents():
    with pytest.warns(LogUniformBoundsWarning, match=r"qloguniform\(2.773, 5.545, 16\)"):
        parse_expression("qloguniform(16, 256, 16)", key="training_batch_size")
    with pytest.warns(LogUniformBoundsWarning, match="cannot reach 0"):
        loguniform(0, 30)


@pytest.mark.parametrize("low, high", [(-9.21, -2.3), (-5, 0), (0, 3), (1, 5), (-2, 1)])
def test_loguniform_with_exponent_bounds_does_not_warn(low, high):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loguniform(low, high)
        qloguniform(low, high, 1)


# -- search spaces ---------------------------------------------------------------------------------------
def test_a_mapping_becomes_one_subspace_with_fixed_values_kept():
    space = SearchSpace.from_config({"model_name": "choice('yolov5')", "learning_rate": "uniform(0.0001, 0.01)",
                                     "model_size": choice("small", "medium"), "number_of_epochs": 5,
                                     "optimizer": "sgd"})
    assert not space.is_conditional
    assert space.subspaces == [{"model_name": choice("yolov5"), "learning_rate": uniform(0.0001, 0.01),
                                "model_size": choice("small", "medium"), "number_of_epochs": 5,
                                "optimizer": "sgd"}]
    assert space.parameters() == {"model_name", "learning_rate", "model_size", "number_of_epochs", "optimizer"}
    assert space.distributions() == {"choice", "uniform"}


YOLO = {"model_name": choice("yolov5"), "learning_rate": uniform(0.0001, 0.01), "model_size": choice("small", "medium")}
FRCNN = {"model_name": choice("fasterrcnn_resnet50_fpn"), "learning_rate": uniform(0.0001, 0.001),
         "optimizer": choice("sgd", "adam", "adamw"), "min_size": choice(600, 800)}


def test_three_conditional_shapes_normalise_to_the_same_subspaces():
    as_list = SearchSpace.from_config([YOLO, FRCNN])
    as_choice = SearchSpace.from_config({"model": choice(YOLO, FRCNN)})
    as_text = SearchSpace.from_config({"model": (
        "choice({'model_name': choice('yolov5'), 'learning_rate': uniform(0.0001, 0.01), "
        "'model_size': choice('small', 'medium')}, "
        "{'model_name': 'choice(\"fasterrcnn_resnet50_fpn\")', 'learning_rate': 'uniform(0.0001, 0.001)', "
        "'optimizer': choice('sgd', 'adam', 'adamw'), 'min_size': choice(600, 800)})")})
    assert as_list.subspaces == [YOLO, FRCNN]
    assert as_choice == as_list
    assert as_text == as_list
    assert as_list.is_conditional
    assert as_list.distributions() == {"choice", "uniform"}


def test_shared_keys_are_merged_into_every_subspace():
    space = SearchSpace.from_config({"number_of_epochs": choice(5, 10), "model": choice(YOLO, FRCNN)})
    assert [sub["number_of_epochs"] for sub in space.subspaces] == [choice(5, 10)] * 2
    assert space.subspaces[0]["model_size"] == choice("small", "medium")


def test_a_parameter_both_shared_and_inside_a_subspace_is_an_error():
    with pytest.raises(ConfigError, match="learning_rate is set both outside and inside"):
        SearchSpace.from_config({"learning_rate": 0.01, "model": choice(YOLO, FRCNN)})


def test_yaml_search_space_with_errors_pointing_at_the_file_and_line():
    text = """\
search_space:
  - model_name: choice('yolov5')
    learning_rate: uniform(0.0001, 0.01)
  - model_name: fasterrcnn_resnet50_fpn
    learning_rate: unifrom(0.0001, 0.001)
"""
    data = yaml.safe_load(text)
    with pytest.raises(ConfigError) as info:
        SearchSpace.from_config(data["search_space"], source="sweep.yaml", lines={"search_space": 1})
    message = str(info.value)
    assert message.startswith("sweep.yaml:1: search_space: learning_rate: unknown search expression unifrom()")
    assert "did you mean uniform()" in message
    assert info.value.field == "learning_rate"
    # a per-parameter line wins over the search_space line
    with pytest.raises(ConfigError, match=r"^sweep.yaml:5: "):
        SearchSpace.from_config(data["search_space"], source="sweep.yaml", lines={"search_space": 1,
                                                                                  "learning_rate": 5})
    good = yaml.safe_load(text.replace("unifrom", "uniform"))
    assert SearchSpace.from_config(good["search_space"]).subspaces[1] == {
        "model_name": "fasterrcnn_resnet50_fpn", "learning_rate": uniform(0.0001, 0.001)}


@pytest.mark.parametrize("bad, needle", [
    ({}, "the search space is empty"),
    ([], "the search space is empty"),
    ("uniform(0, 1)", "expected a mapping"),
    ([{"a": choice(1)}, 3], "item 2 is 3"),
    ({1: choice(1, 2)}, "parameter names are strings"),
    ({"model": choice({"a": 1}, {})}, "a sub-space is empty"),
])
def test_malformed_spaces(bad, needle):
    with pytest.raises(ConfigError, match=needle):
        SearchSpace.from_config(bad)


def test_to_config_round_trips_through_yaml():
    space = SearchSpace.from_config([{**YOLO, "tile_grid_size": [3, 2], "box_score_thresh": "qnormal(0.3, 0.1, 0.05)"},
                                     FRCNN])
    text = yaml.safe_dump(space.to_config())
    assert SearchSpace.from_config(yaml.safe_load(text)) == space
    single = SearchSpace.from_config(YOLO)
    assert SearchSpace.from_config(single.to_config()) == single
    assert isinstance(single.to_config(), dict)


# -- grids -----------------------------------------------------------------------------------------------
def test_grid_is_every_combination_exactly_once_in_a_deterministic_order():
    space = SearchSpace.from_config({"optimizer": choice("sgd", "adam"), "training_batch_size": choice(8, 16, 32),
                                     "number_of_epochs": 3})
    grid = space.grid()
    assert grid[:2] == [{"optimizer": "sgd", "training_batch_size": 8, "number_of_epochs": 3},
                        {"optimizer": "sgd", "training_batch_size": 16, "number_of_epochs": 3}]
    assert len(grid) == space.grid_size() == 6
    assert {(g["optimizer"], g["training_batch_size"]) for g in grid} == {
        (o, b) for o in ("sgd", "adam") for b in (8, 16, 32)}
    assert space.grid() == grid


def test_grid_across_subspaces_keeps_parameters_with_their_model():
    space = SearchSpace.from_config([{"model_name": "yolov5", "model_size": choice("small", "medium")},
                                     {"model_name": choice("fasterrcnn_resnet50_fpn", "retinanet_resnet50_fpn"),
                                      "optimizer": choice("sgd", "adam")}])
    with_index = space.grid_with_subspaces()
    assert len(with_index) == 2 + 4
    for index, params in with_index:
        assert ("model_size" in params) == (index == 0) == (params["model_name"] == "yolov5")


def test_grid_removes_configurations_reachable_from_two_subspaces():
    space = SearchSpace.from_config([{"a": choice(1, 2)}, {"a": choice(2, 3)}])
    assert space.grid() == [{"a": 1}, {"a": 2}, {"a": 3}]


def test_grid_of_unhashable_values():
    space = SearchSpace.from_config({"tile_grid_size": choice([3, 2], [5, 3]), "x": choice(["a"], ["a"])})
    assert space.grid() == [{"tile_grid_size": [3, 2], "x": ["a"]}, {"tile_grid_size": [5, 3], "x": ["a"]}]


def test_a_choice_of_dicts_is_always_a_choice_of_subspaces():
    space = SearchSpace.from_config({"optimizer": "sgd", "x": choice({"momentum": 0.9}, {"nesterov": 1})})
    assert space.subspaces == [{"optimizer": "sgd", "momentum": 0.9}, {"optimizer": "sgd", "nesterov": 1}]


def test_grid_refuses_other_expressions_with_the_spec_message():
    space = SearchSpace.from_config({"optimizer": choice("sgd"), "learning_rate": "uniform(0.001, 0.01)"})
    with pytest.raises(ConfigError) as info:
        space.grid()
    assert str(info.value) == "grid sampling supports only choice(); learning_rate is uniform(0.001, 0.01)"
    assert info.value.field == "learning_rate"


def test_grid_refuses_to_enumerate_an_enormous_space():
    space = SearchSpace.from_config({f"p{i}": choice(*range(10)) for i in range(6)})
    assert space.grid_size() == 10 ** 6 > MAX_GRID_SIZE
    with pytest.raises(ConfigError, match="1000000 combinations"):
        space.grid()


def test_distribution_classes_are_frozen():
    dist = Uniform(0, 1)
    with pytest.raises(AttributeError):
        dist.low = 0.5  # type: ignore[misc]
    assert isinstance(QUniform(0, 1, 0.5), QUniform) and isinstance(LogUniform(-1, 0), LogUniform)
    assert Choice(("a",)).is_subspaces is False


def test_importing_space_policies_and_sampling_does_not_import_optuna():
    code = ("import sys, jupyter_avml.sweep.space, jupyter_avml.sweep.policies, jupyter_avml.sweep.sampling; "
            "print('optuna' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
