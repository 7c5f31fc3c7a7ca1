"""The access log of a running service keeps no value of any query parameter.

``callbridge demo`` runs in its own process with its own logging (as a user starts it); a
supervisor searches the calls by number in every form the README accepts and by a customer's
name, the API is asked for a customer by number; then every line of its real log is read.
"""

from __future__ import annotations

from demo_process import running_demo

from crm_bridge.log_setup import target_for_log

SEARCHES = [
    "/supervisor/calls?number=138+0013+8000",
    "/supervisor/calls?number=138%200013%208000",
    "/supervisor/calls?number=0086-138-0013-8000",
    "/supervisor/calls?number=%2B86%20138%200013%208000",
    "/supervisor/calls?customer=%E5%BC%A0%E4%B8%89",
    "/supervisor/calls?customer=%E5%BC%A0%E4%B8%89&number=13800138000&words=%E9%80%80%E6%AC%BE",
]
API_SEARCHES = [
    "/api/customers?phone=0086%20138%200013%208000",
    "/api/customers?phone=138-0013-8000",
]
FORBIDDEN = ["0013", "张三", "%E5%BC%A0", "退款", "%E9%80%80", "138 0013", "138+0013"]


def test_the_target_keeps_the_path_and_the_names_only():
    assert target_for_log(SEARCHES[-1]) == "/supervisor/calls?customer=*&number=*&words=*"
    assert target_for_log("/api/calls") == "/api/calls"
    assert target_for_log("/calls/13800138000%0d%0aforged") == "/calls/138****8000%0D%0Aforged"


def test_no_searched_number_or_name_reaches_the_real_access_log(tmp_path):
    with running_demo(tmp_path) as demo:
        client = demo.signed_in("supervisor")
        for target in SEARCHES:
            assert client.get(target).status_code == 200, target
        headers = {"Authorization": f"Bearer {demo.token}"}
        for target in API_SEARCHES:
            assert client.get(target, headers=headers).status_code == 200
        client.close()
    written = demo.log.read_text()
    access = [line for line in written.splitlines() if "uvicorn.access" in line]
    assert sum("/supervisor/calls?number=*" in line for line in access) >= 4  # the log was on
    assert any("/supervisor/calls?customer=*&number=*&words=*" in line for line in access)
    assert any("/api/customers?phone=*" in line for line in access)
    told = "\n".join(line for line in written.splitlines()
                      if "alembic.runtime.migration" not in line)  # migration 0013_…: no number
    for form in FORBIDDEN:
        assert form not in told, f"{form!r} reached the log"
