"""CallGate: a per-key cap (tenant, caller) on running calls, on the event loop."""

import asyncio

import pytest

from mcp_tenants.calls import CallGate
from mcp_tenants.errors import TenantBusy


def test_a_tenant_over_its_cap_waits_then_is_busy_while_others_pass():
    gate = CallGate(2, 0.2)
    release = asyncio.Event

    async def main():
        hold = release()

        async def occupy():
            async with gate.slot("slow"):
                await hold.wait()

        holders = [asyncio.create_task(occupy()) for _ in range(2)]
        await asyncio.sleep(0.01)
        with pytest.raises(TenantBusy, match="tenant 'slow' is busy"):
            async with gate.slot("slow"):
                pass
        async with gate.slot("other"):  # another tenant is not held up
            pass
        async with gate.slot(None):  # tools without a tenant are never gated
            pass
        hold.set()
        await asyncio.gather(*holders)
        async with gate.slot("slow"):  # free again
            pass
        assert gate._slots == {}  # nothing kept for idle tenants

    asyncio.run(main())
