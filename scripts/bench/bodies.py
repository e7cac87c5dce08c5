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


if __name__ == "__main__":
    import json
    import sys

    print(json.dumps(care_plan(int(sys.argv[1]), with_id=sys.argv[2] == "id")))
