"""The CarePlan used by the benchmark: a realistic shared care plan for one child."""


def care_plan(n: int, with_id: bool) -> dict:
    plan = {
        "resourceType": "CarePlan",
        "status": "active",
        "intent": "plan",
        "category": [{"coding": [{"system": "http://hl7.org/fhir/us/core/CodeSystem/careplan-category", "code": "assess-plan"}]}],
        "title": f"Shared care plan {n}",
        "subject": {"reference": f"Patient/p-{n % 1000}"},
        "period": {"start": "2026-01-01", "end": "2026-12-31"},
        "careTeam": [{"reference": f"CareTeam/team-{n % 1000}"}],
        "addresses": [{"display": "Medical complexity"}],
        "activity": [
            {"detail": {"kind": "Appointment", "status": "scheduled", "description": "Monthly care meeting",
                        "scheduledPeriod": {"start": "2026-02-01T10:00:00+01:00"}}},
            {"detail": {"kind": "Task", "status": "in-progress", "description": "Arrange transportation",
                        "dailyAmount": {"value": 1.50, "unit": "trip"}}},
        ],
        "note": [{"text": "Family prefers calls after 4 pm."}],
    }
    if with_id:
        plan = {"resourceType": "CarePlan", "id": f"bench-{n}", **{k: v for k, v in plan.items() if k != "resourceType"}}
    return plan


def transaction(n: int) -> dict:
    """A transaction Bundle of 7 entries: a CareTeam, a CarePlan naming it and five Tasks based on
    the plan, linked by urn:uuid fullUrls, for patient p-(n % 1000)."""
    patient = {"reference": f"Patient/p-{n % 1000}"}
    team = {"resourceType": "CareTeam", "status": "active", "name": "Complex care team", "subject": patient,
            "participant": [{"member": {"reference": "Practitioner/pr-1"}}]}
    plan = {**care_plan(n, with_id=False), "careTeam": [{"reference": "urn:uuid:00000000-0000-4000-8000-000000000001"}]}
    entries = [
        {"fullUrl": "urn:uuid:00000000-0000-4000-8000-000000000001", "resource": team,
         "request": {"method": "POST", "url": "CareTeam"}},
        {"fullUrl": "urn:uuid:00000000-0000-4000-8000-000000000002", "resource": plan,
         "request": {"method": "POST", "url": "CarePlan"}},
    ]
    for t, what in enumerate(["Intake call", "Insurance help", "Arrange transportation", "Parent coaching",
                              "Monthly care meeting"]):
        task = {"resourceType": "Task", "status": "requested", "intent": "order", "priority": "routine",
                "description": what, "for": patient,
                "basedOn": [{"reference": "urn:uuid:00000000-0000-4000-8000-000000000002"}],
                "requester": {"reference": "Practitioner/pr-1"}, "owner": {"reference": "Practitioner/pr-2"},
                "restriction": {"period": {"end": "2026-12-31"}}}
        entries.append({"fullUrl": f"urn:uuid:00000000-0000-4000-8000-00000000001{t}", "resource": task,
                        "request": {"method": "POST", "url": "Task"}})
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}


if __name__ == "__main__":
    import json
    import sys

    print(json.dumps(care_plan(int(sys.argv[1]), with_id=sys.argv[2] == "id")))
