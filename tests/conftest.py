"""Suite-wide collection order: the few long-running tests start first.

With pytest-xdist (-n 2) tests are handed out in collection order; a 10-20 s test collected last keeps
one worker busy after the other has finished. Starting the long ones first lets the many short tests
fill in around them. Only the order changes: every test still runs, with the same fixtures.
"""
from __future__ import annotations

import pytest

# nodeid prefixes, longest first (from `pytest --durations`, -n 0): each takes 4-18 s of wall time
SLOW_FIRST = (
    "tests/scripts/test_verify_sh.py::test_many_parts_are_all_recognised_as_listed",
    "tests/unit/test_site_tasks.py::test_site_scripts_are_shellcheck_clean",
    "tests/scripts/test_03_join_worker_node.py::test_unreachable_server_is_retried_a_bounded_number_of_times",
    "tests/scripts/test_01_lb_site.py::test_site_preflight_runs_only_with_a_bastion",
    "tests/unit/test_render.py::test_rendered_scripts_pass_shellcheck",
    "tests/scripts/test_03_deploy_gl_backend.py::test_real_mode_does_not_trust_a_deployment_of_the_previous_release",
    "tests/scripts/test_03_deploy_gl_backend.py::test_running_but_api_not_answering_fails_before_anything",
    "tests/unit/test_lab_vagrantfile.py::test_vagrantfile_validates_with_the_environment_the_lab_sets",
)


def _rank(item: pytest.Item) -> int:
    for rank, prefix in enumerate(SLOW_FIRST):
        if item.nodeid.startswith(prefix):
            return rank
    return len(SLOW_FIRST)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    items.sort(key=_rank)  # stable: everything else keeps its order
