"""jaxsenti.xla_options: the defaults join XLA_FLAGS, the user's own setting of a flag wins, and they can be turned off."""

from __future__ import annotations

from jaxsenti import xla_options

DEFAULTS = {"--xla_cpu_use_onednn": "true", "--xla_cpu_experimental_ynn_fusion_type": "dot"}


def test_defaults_are_appended_to_what_the_user_set():
    env = {"XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
    added = xla_options.apply_defaults(env, DEFAULTS)
    assert added == ["--xla_cpu_use_onednn=true", "--xla_cpu_experimental_ynn_fusion_type=dot"]
    assert env["XLA_FLAGS"] == "--xla_force_host_platform_device_count=2 " + " ".join(added)
    info = xla_options.applied_flags(env, DEFAULTS)
    assert info["jaxsenti_defaults"] == added and not info["defaults_disabled"]
    assert xla_options.apply_defaults(env, DEFAULTS) == []  # idempotent


def test_the_users_own_value_of_a_flag_wins():
    env = {"XLA_FLAGS": "--xla_cpu_use_onednn=false"}
    assert xla_options.apply_defaults(env, DEFAULTS) == ["--xla_cpu_experimental_ynn_fusion_type=dot"]
    assert "--xla_cpu_use_onednn=true" not in env["XLA_FLAGS"] and "--xla_cpu_use_onednn=false" in env["XLA_FLAGS"]
    assert xla_options.applied_flags(env, DEFAULTS)["jaxsenti_defaults"] == ["--xla_cpu_experimental_ynn_fusion_type=dot"]


def test_disabling_and_accelerator_runs_add_nothing():
    for env in ({"JAXSENTI_XLA_DEFAULTS": "0"}, {"JAXSENTI_XLA_DEFAULTS": "off", "XLA_FLAGS": "--a=1"},
                {"JAX_PLATFORMS": "cuda"}):
        before = dict(env)
        assert xla_options.apply_defaults(env, DEFAULTS) == [] and env == before
    assert xla_options.applied_flags({"JAXSENTI_XLA_DEFAULTS": "0"}, DEFAULTS)["defaults_disabled"]


def test_no_defaults_until_measured():
    env = {}
    assert xla_options.apply_defaults(env) == [] and env == {}
