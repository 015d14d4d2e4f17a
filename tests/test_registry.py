import pytest

from neuralcollapse._registry import Registry


def make_registry():
    reg = Registry("widget")

    @reg.register("alpha", aliases=("first", "a-one"))
    def alpha(size=1):
        return ("alpha", size)

    @reg.register()
    def beta_widget():
        return "beta"

    return reg


def test_register_create_and_names():
    reg = make_registry()
    assert reg.names() == ["alpha", "beta_widget"]
    assert reg.create("alpha", size=3) == ("alpha", 3)
    assert reg.create("beta-widget") == "beta"  # '-' and '_' alike
    assert reg.create("ALPHA") == ("alpha", 1)  # case-insensitive


def test_aliases_resolve_to_canonical():
    reg = make_registry()
    assert reg.resolve("first") == "alpha"
    assert reg.resolve("A_ONE") == "alpha"
    assert "first" in reg and "gamma" not in reg and 3 not in reg
    assert len(reg) == 2


def test_unknown_name_lists_choices_and_closest():
    reg = make_registry()
    with pytest.raises(ValueError, match=r"unknown widget 'alpah'.*alpha, beta_widget.*did you mean 'alpha'"):
        reg.get("alpah")


def test_alias_suggestion_points_to_canonical_name():
    reg = make_registry()
    with pytest.raises(ValueError, match="did you mean 'alpha'"):
        reg.get("firts")


def test_duplicate_registration_rejected():
    reg = make_registry()
    with pytest.raises(ValueError, match="already registered"):
        reg.add("alpha", object())
    with pytest.raises(ValueError, match="alias 'first' is already registered"):
        reg.add("gamma", object(), aliases=("first",))


def test_non_string_name_is_type_error():
    with pytest.raises(TypeError, match="widget name must be a str"):
        make_registry().get(3)
