// Drives Rekey with npm `@zitadel/client` (ZITADEL's official TypeScript client, connect-es):
//
//   node zitadel-client.mjs grpc       # `@zitadel/client/node` createServerTransport: gRPC over h2c
//   node zitadel-client.mjs grpc-web   # `@zitadel/client/web` createClientTransport: gRPC-Web over
//                                      # HTTP/1.1 (fetch)
//
// Both factories take the connect transport options, so `baseUrl: "http://host:port"` is all it
// takes to reach a plain-http server; the token goes in as `Authorization: Bearer …` through the
// package's own interceptor. Calls without a token use the same transport factories the package
// wraps (`createGrpcTransport` / `createGrpcWebTransport`) without that interceptor.
//
// Configuration comes from the environment (see lib.mjs `config`); prints one JSON summary line.

import { ConnectError } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { createGrpcWebTransport } from "@connectrpc/connect-web";
import { createServerTransport } from "@zitadel/client/node";
import { createUserServiceClient } from "@zitadel/client/v2";
import { createClientTransport } from "@zitadel/client/web";
import { ErrorDetailSchema } from "@zitadel/proto/zitadel/message_pb.js";
import { UserState } from "@zitadel/proto/zitadel/user/v2/user_pb.js";

import { Checks, GRPC, packageVersion, UNKNOWN_USER_ID, WRONG_CODE, config } from "./lib.mjs";

const form = process.argv[2];
if (form !== "grpc" && form !== "grpc-web") {
  console.error("usage: node zitadel-client.mjs grpc|grpc-web");
  process.exit(2);
}
const cfg = config();
const version = packageVersion("@zitadel/client");
const checks = new Checks("@zitadel/client", version, form);

/** A UserService client; `token` undefined → no Authorization header at all. */
function users(token) {
  const opts = { baseUrl: cfg.baseUrl };
  let transport;
  if (form === "grpc") {
    transport = token ? createServerTransport(token, opts) : createGrpcTransport(opts);
  } else {
    transport = token ? createClientTransport(token, opts) : createGrpcWebTransport(opts);
  }
  return createUserServiceClient(transport);
}

/** What the client surfaces: ConnectError code, raw message and the decoded ErrorDetails. */
function normalize(err) {
  if (!(err instanceof ConnectError)) {
    throw new Error(`not a ConnectError: ${err}`);
  }
  return {
    code: err.code,
    message: err.rawMessage,
    details: err.findDetails(ErrorDetailSchema).map((d) => ({ id: d.id, message: d.message })),
  };
}

const admin = users(cfg.adminToken);
const anonymous = users(undefined);
let userId;

await checks.step("setup.add_human_user", async () => {
  const res = await admin.addHumanUser({
    organization: { org: { case: "orgId", value: cfg.orgId } },
    profile: { givenName: "Client", familyName: form },
    email: { email: cfg.email, verification: { case: "isVerified", value: true } },
  });
  userId = res.userId;
  checks.fact("userId", userId);
  if (!userId) return `no userId in ${JSON.stringify(res)}`;
  if (res.details?.resourceOwner !== cfg.orgId) {
    return `details.resourceOwner ${res.details?.resourceOwner}, want ${cfg.orgId}`;
  }
  return true;
});

if (!userId) {
  userId = cfg.fallbackUserId;
  checks.fact("userId", userId);
  checks.fact("userSource", "cli");
}

await checks.step("setup.get_user_initial", async () => {
  const res = await admin.getUserByID({ userId });
  if (res.user?.userId !== userId) return `user ${res.user?.userId}, want ${userId}`;
  if (res.user?.state !== UserState.INITIAL) return `state ${res.user?.state}, want INITIAL`;
  return true;
});

let code;
await checks.step("reset.return_code", async () => {
  const res = await admin.passwordReset({ userId, medium: { case: "returnCode", value: {} } });
  code = res.verificationCode;
  if (!code) return `no verificationCode in response`;
  if (res.details?.resourceOwner !== cfg.orgId) {
    return `details.resourceOwner ${res.details?.resourceOwner}, want ${cfg.orgId}`;
  }
  return true;
});

const setWith = (client, id, verificationCode) =>
  client.setPassword({
    userId: id,
    newPassword: { password: cfg.newPassword, changeRequired: false },
    verification: { case: "verificationCode", value: verificationCode },
  });

await checks.expectError("set.wrong_code", () => setWith(anonymous, userId, WRONG_CODE), normalize, {
  code: GRPC.INVALID_ARGUMENT,
  id: "CODE-woT0xc",
  message: "Code is invalid (CODE-woT0xc)",
});

await checks.step("set.with_code", async () => {
  // The code is the proof: no token (as the hosted page calls it).
  const res = await setWith(anonymous, userId, code);
  if (res.details?.resourceOwner !== cfg.orgId) {
    return `details.resourceOwner ${res.details?.resourceOwner}, want ${cfg.orgId}`;
  }
  return true;
});

await checks.expectError("set.code_replayed", () => setWith(admin, userId, code), normalize, {
  code: GRPC.FAILED_PRECONDITION,
  id: "COMMAND-2M9fs",
  message: "Code not found (COMMAND-2M9fs)",
});

await checks.step("setup.get_user_active", async () => {
  const res = await admin.getUserByID({ userId });
  if (res.user?.state !== UserState.ACTIVE) return `state ${res.user?.state}, want ACTIVE`;
  return true;
});

await checks.expectError(
  "set.unknown_user",
  () => setWith(anonymous, UNKNOWN_USER_ID, WRONG_CODE),
  normalize,
  { code: GRPC.FAILED_PRECONDITION, id: "COMMAND-2M9fs", message: "Code not found (COMMAND-2M9fs)" },
);

const reset = (client, id) => client.passwordReset({ userId: id, medium: { case: "returnCode", value: {} } });

const unknown = await checks.expectError("reset.unknown_user", () => reset(admin, UNKNOWN_USER_ID), normalize, {
  code: GRPC.NOT_FOUND,
  id: "COMMAND-SAF4f",
  message: "User could not be found (COMMAND-SAF4f)",
});

await checks.expectError("reset.no_token", () => reset(anonymous, userId), normalize, {
  code: GRPC.UNAUTHENTICATED,
});

const other = await checks.expectError("reset.other_tenant", () => reset(admin, cfg.otherUserId), normalize, {
  code: GRPC.NOT_FOUND,
  id: "COMMAND-SAF4f",
});
checks.check(
  "reset.other_tenant_same_as_unknown",
  other !== undefined && unknown !== undefined && JSON.stringify(other) === JSON.stringify(unknown),
  { other, unknown },
);

await checks.expectError("get.other_tenant", () => admin.getUserByID({ userId: cfg.otherUserId }), normalize, {
  code: GRPC.NOT_FOUND,
});

checks.finish();
