"""Wire models survive the API's moving shapes: numbers as strings, unknown fields, union shapes."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from vpsie_autoscaler.vpsie import models


def test_numbers_may_arrive_as_strings() -> None:
    plan = models.Plan.model_validate_json(
        b'{"identifier": "p", "cpu": "4", "ram": 8192, "ssd": "160", "price": "40.50", "traffic": ""}'
    )
    assert (plan.cpu, plan.ram, plan.ssd, plan.price, plan.traffic) == (4, 8192, 160, 40.5, None)


def test_a_non_numeric_string_is_a_clear_error() -> None:
    with pytest.raises(ValidationError, match="cpu"):
        models.Plan.model_validate_json(b'{"identifier": "p", "cpu": "four", "ram": 1, "ssd": 1}')


def test_unknown_fields_are_ignored() -> None:
    dc = models.Datacenter.model_validate_json(
        b'{"identifier": "d", "dc_name": "Helsinki", "brand_new_field": [1]}'
    )
    assert dc.dc_name == "Helsinki"


@pytest.mark.parametrize(
    "body",
    [
        b'{"error": false, "token": {"access": {"token": "A", "expires": "2026-05-04T10:30:00.000Z"}}}',
        b'{"accessToken": {"token": "A", "expires": "2026-05-04T10:30:00.000Z"}, "refreshToken": {}}',
        b'{"error": false, "data": {"access": {"token": "A", "expires": "2026-05-04T10:30:00.000Z"}}}',
    ],
    ids=["sdk", "as", "data"],
)
def test_every_known_token_shape_yields_the_access_token(body: bytes) -> None:
    access = models.TokenResponse.model_validate_json(body).access()
    assert access is not None
    assert (access.token, access.expires) == ("A", "2026-05-04T10:30:00.000Z")


def test_token_response_without_token_has_no_access() -> None:
    assert models.TokenResponse.model_validate_json(b'{"error": false}').access() is None


@pytest.mark.parametrize("text", ["2026-02-03T08:41:02.000Z", "2026-02-03 08:41:02"])
def test_timestamps_in_iso_and_sql_form(text: str) -> None:
    vm = models.VM.model_validate({"identifier": "v", "hostname": "h", "created_on": text})
    assert vm.created_on == datetime(2026, 2, 3, 8, 41, 2, tzinfo=UTC)


def test_cluster_node_union_shape() -> None:
    sdk = models.K8sNode.model_validate(
        {"id": 1, "hostname": "c-slave-11cc", "node_type": 2, "default_ip": "1.2.3.4"}
    )
    as_shape = models.K8sNode.model_validate(
        {"identifier": "u", "hostname": "c-master", "role": "master", "ip": "5.6.7.8"}
    )
    assert (sdk.is_worker, sdk.address, sdk.identifier) == (True, "1.2.3.4", None)
    assert (as_shape.is_worker, as_shape.address) == (False, "5.6.7.8")


def test_vm_project_id_under_either_key() -> None:
    assert models.VM.model_validate({"identifier": "v", "hostname": "h", "project_id": 4}).project == 4
    assert models.VM.model_validate({"identifier": "v", "hostname": "h", "projectId": "5"}).project == 5


def test_envelope_total_may_be_anything() -> None:
    env = models.Envelope[list[models.Datacenter]].model_validate_json(
        b'{"error": false, "data": [], "total": [{"count": 3}]}'
    )
    assert env.data == []


@pytest.mark.parametrize("text", ["0000-00-00 00:00:00", "0000-00-00", "0000-00-00T00:00:00.000Z", "", "  "])
def test_zero_and_empty_dates_mean_never(text: str) -> None:
    assert (
        models.VM.model_validate({"identifier": "v", "hostname": "h", "created_on": text}).created_on is None
    )


@pytest.mark.parametrize(
    "text", ["2026-02-03T08:41:02", "2026-02-03T08:41:02.000", "2026-02-03 08:41:02.000"]
)
def test_a_timestamp_without_offset_is_utc(text: str) -> None:
    stamp = models.K8sNode.model_validate({"hostname": "h", "created_on": text}).created_on
    assert stamp == datetime(2026, 2, 3, 8, 41, 2, tzinfo=UTC)
    assert stamp is not None
    assert stamp.tzinfo is not None


def test_an_offset_is_kept() -> None:
    stamp = models.K8sCluster.model_validate(
        {"identifier": "c", "created_on": "2026-02-03T10:41:02+02:00"}
    ).created_on
    assert stamp == datetime(2026, 2, 3, 8, 41, 2, tzinfo=UTC)


@pytest.mark.parametrize("created_on", ["yesterday", "2026-13-01T00:00:00Z", [2026], {"t": 1}])
def test_a_timestamp_in_no_known_form_is_an_error(created_on: object) -> None:
    with pytest.raises(ValidationError, match="created_on"):
        models.VM.model_validate({"identifier": "v", "hostname": "h", "created_on": created_on})


@pytest.mark.parametrize(
    "hostname", [None, "", "  ", "a b", "a\nb", "a\u2028b", "a\x00b", "a\x9bb", "x" * 254, 5]
)
def test_a_hostname_that_cannot_name_a_node_is_an_error(hostname: object) -> None:
    with pytest.raises(ValidationError, match="hostname"):
        models.VM.model_validate({"identifier": "v", "hostname": hostname})
    with pytest.raises(ValidationError, match="hostname"):
        models.K8sNode.model_validate({"hostname": hostname})
    with pytest.raises(ValidationError, match="hostname"):
        models.PendingVM.model_validate({"data": {"hostname": hostname}})


@pytest.mark.parametrize("identifier", [None, "", " "])
def test_a_blank_identifier_is_an_error(identifier: object) -> None:
    with pytest.raises(ValidationError, match="identifier"):
        models.VM.model_validate({"identifier": identifier, "hostname": "h"})
    with pytest.raises(ValidationError, match="identifier"):
        models.K8sCluster.model_validate({"identifier": identifier})


@pytest.mark.parametrize("field", ["is_active", "power", "is_deleted", "is_terminated"])
def test_a_null_state_flag_is_an_error(field: str) -> None:
    with pytest.raises(ValidationError, match=field):
        models.VM.model_validate({"identifier": "v", "hostname": "h", field: None})


def test_a_missing_state_flag_keeps_its_default() -> None:
    vm = models.VM.model_validate({"identifier": "v", "hostname": "h"})
    assert (vm.is_active, vm.power, vm.is_deleted, vm.is_terminated) == (0, 0, 0, 0)


def test_node_group_id_and_count_are_required_numbers_and_the_name_is_cosmetic() -> None:
    for bad in ({"id": "abc"}, {"id": None}, {"id": 1, "nodes_count": None}, {"id": 1, "nodes_count": "x"}):
        with pytest.raises(ValidationError):
            models.K8sNodeGroup.model_validate(bad)
    group = models.K8sNodeGroup.model_validate({"id": "7", "group_name": None, "nodes_count": "2"})
    assert (group.id, group.group_name, group.nodes_count) == (7, "", 2)


def test_cluster_detail_requires_nodes() -> None:
    with pytest.raises(ValidationError, match="nodes"):
        models.K8sClusterDetail.model_validate({"identifier": "c"})
    with pytest.raises(ValidationError, match="nodes"):
        models.K8sClusterDetail.model_validate({"identifier": "c", "nodes": None})
    assert models.K8sClusterDetail.model_validate({"identifier": "c", "nodes": []}).nodes == []
