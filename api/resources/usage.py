"""GET /usage: the caller's tenant's running and queued builds, its limits in force and its build
minutes this month (common/records/usage.py); no other tenant's."""

from __future__ import annotations

import falcon

from api.admission import TenantAdmission
from api.auth import principal
from common.contract import Usage
from common.models import utc_now
from common.records.usage import month_of


class UsageResource:
    def __init__(self, admission: TenantAdmission) -> None:
        self.admission = admission

    async def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        tenant, store = principal(req).tenant, self.admission.store
        limits = await self.admission.limits(tenant)
        activity = await store.tenant_counts(tenant)
        month = month_of(utc_now())
        seconds = await store.build_seconds(tenant, month)
        resp.media = Usage(tenant, activity.running, activity.queued, limits, month, round(seconds / 60, 2))
