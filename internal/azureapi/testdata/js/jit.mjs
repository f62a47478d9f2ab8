// Drives ajard's Azure-compatible JIT API with Microsoft's JavaScript SDK
// (@azure/arm-security). Run by TestJavaScriptSDK (../../js_test.go) with
// AJAR_URL (https), AJAR_TOKEN, AJAR_SUBSCRIPTION, AJAR_GROUP,
// AJAR_LOCATION, AJAR_VM and AJAR_VM2 (ARM VM ids) and AJAR_SOURCE (an
// address) set; prints what each call returned as one JSON object for the
// test to check. Lists ask for pages of one policy ($top=1), so that the
// SDK follows ajard's nextLinks.
import { SecurityCenter } from "@azure/arm-security";

const env = process.env;
const credential = {
  getToken: async () => ({ token: env.AJAR_TOKEN, expiresOnTimestamp: Date.now() + 3600_000 }),
};
const client = new SecurityCenter(credential, env.AJAR_SUBSCRIPTION, {
  endpoint: env.AJAR_URL,
  $host: env.AJAR_URL,
  credentialScopes: ["https://management.ajar.invalid/.default"],
  retryOptions: { maxRetries: 0 },
});
client.pipeline.addPolicy({
  name: "pageOfOne",
  sendRequest: (req, next) => {
    const u = new URL(req.url);
    if (req.method === "GET" && u.pathname.endsWith("/jitNetworkAccessPolicies") && !u.searchParams.has("$skipToken")) {
      u.searchParams.set("$top", "1");
      req.url = u.toString();
    }
    return next(req);
  },
});
const jit = client.jitNetworkAccessPolicies;
const rg = env.AJAR_GROUP, loc = env.AJAR_LOCATION, name = "default";

// ids returns the ids of a list's policies, page by page.
async function ids(iter) {
  const out = [];
  for await (const page of iter.byPage()) out.push(page.map((p) => p.id));
  return out;
}

async function failure(call) {
  try {
    await call();
    return null;
  } catch (e) {
    return { statusCode: e.statusCode, code: e.code };
  }
}

const out = {};
out.created = await jit.createOrUpdate(rg, loc, name, {
  kind: "Basic",
  virtualMachines: [{
    id: env.AJAR_VM,
    ports: [
      { number: 22, protocol: "TCP", allowedSourceAddressPrefix: "*", maxRequestAccessDuration: "PT3H" },
      { number: 3389, protocol: "*", allowedSourceAddressPrefixes: ["198.51.100.0/24", "203.0.113.0/24"], maxRequestAccessDuration: "PT1H" },
    ],
  }],
});
out.second = await jit.createOrUpdate(rg, loc, "second", {
  kind: "Basic",
  virtualMachines: [{ id: env.AJAR_VM2, ports: [{ number: 22, protocol: "TCP", maxRequestAccessDuration: "PT30M" }] }],
});
out.got = await jit.get(rg, loc, name);
out.list = await ids(jit.list());
out.listByRegion = await ids(jit.listByRegion(loc));
out.listByResourceGroup = await ids(jit.listByResourceGroup(rg));
out.listByResourceGroupAndRegion = await ids(jit.listByResourceGroupAndRegion(rg, loc));
out.otherRegion = await ids(jit.listByRegion("eastus2"));
out.initiated = await jit.initiate(rg, loc, name, {
  virtualMachines: [{
    id: env.AJAR_VM,
    ports: [{ number: 22, endTimeUtc: new Date(Date.now() + 30 * 60_000), allowedSourceAddressPrefix: env.AJAR_SOURCE }],
  }],
  justification: "deploy hotfix",
});
out.afterInitiate = await jit.get(rg, loc, name);
out.badInitiate = await failure(() => jit.initiate(rg, loc, name, {
  virtualMachines: [{ id: env.AJAR_VM, ports: [{ number: 8080, endTimeUtc: new Date(Date.now() + 60_000) }] }],
}));
await jit.delete(rg, loc, name);
await jit.delete(rg, loc, "second");
out.deletedAgain = await failure(() => jit.delete(rg, loc, name));
out.gone = await failure(() => jit.get(rg, loc, name));
out.listAfterDelete = await ids(jit.list());
console.log(JSON.stringify(out));
