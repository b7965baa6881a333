// Drives Rekey with npm `@zitadel/node` (nice-grpc / @grpc/grpc-js, `application/grpc`):
//
//   node zitadel-node.mjs
//
// - its user client, which is bound to `zitadel.user.v2beta.UserService`: AddHumanUser,
//   GetUserByID, PasswordReset(returnCode), SetPassword (code and current password) and the
//   error paths;
// - its management client (`zitadel.management.v1.ManagementService`) with the `x-zitadel-orgid`
//   metadata: SendHumanResetPasswordNotification, SetHumanPassword, and the v1 error paths.
//
// `createChannel("http://host:port")` gives an insecure (h2c) channel; the package's
// `createAccessTokenInterceptor(token)` adds `authorization: Bearer …`; a client created with no
// interceptor sends no token. The package has no `exports` map, so it is imported by its file path
// (`@zitadel/node/dist/api/index.js`), as its users do. grpc-js does not surface
// `grpc-status-details-bin`; the trailers are read through nice-grpc's `onTrailer` call option
// and decoded here.
//
// Configuration comes from the environment (see lib.mjs `config`); prints one JSON summary line.

import {
  createAccessTokenInterceptor,
  createManagementClient,
  createUserClient,
} from "@zitadel/node/dist/api/index.js";
import { UserState } from "@zitadel/node/dist/api/generated/zitadel/user/v2beta/user.js";
import { ClientError, Metadata } from "nice-grpc";

import { Checks, GRPC, packageVersion, UNKNOWN_USER_ID, WRONG_CODE, config, decodeStatusDetails } from "./lib.mjs";

const cfg = config();
const version = packageVersion("@zitadel/node");
const checks = new Checks("@zitadel/node", version, "grpc");

const endpoint = cfg.baseUrl;
const users = (token) =>
  token ? createUserClient(endpoint, createAccessTokenInterceptor(token)) : createUserClient(endpoint);
const management = (token) =>
  token
    ? createManagementClient(endpoint, createAccessTokenInterceptor(token))
    : createManagementClient(endpoint);

/**
 * Call options that capture the trailers, and a normalizer of the ClientError that reads the
 * ErrorDetails from `grpc-status-details-bin`.
 */
function capture(metadata) {
  const seen = {};
  const options = {
    onTrailer: (trailer) => {
      seen.trailer = trailer;
    },
  };
  if (metadata) options.metadata = Metadata(metadata);
  const normalize = (err) => {
    if (!(err instanceof ClientError)) {
      throw new Error(`not a ClientError: ${err}`);
    }
    const out = { code: err.code, message: err.details, details: [] };
    const raw = seen.trailer?.get("grpc-status-details-bin");
    if (raw !== undefined) {
      const bytes = typeof raw === "string" ? Buffer.from(raw, "base64") : raw;
      const status = decodeStatusDetails(bytes);
      out.details = status.details.map((d) => ({ id: d.id, message: d.message, typeUrl: d.typeUrl }));
      if (status.code !== err.code) {
        out.statusCodeMismatch = status.code;
      }
    }
    return out;
  };
  return { options, normalize };
}

/** Runs `call(options)` which must fail with `want`; see Checks.expectError. */
function expectError(name, call, want, metadata) {
  const { options, normalize } = capture(metadata);
  return checks.expectError(name, () => call(options), normalize, want);
}

const admin = users(cfg.adminToken);
const anonymous = users(undefined);
let userId;

// ---- user client, v2beta --------------------------------------------------------------------

await checks.step("setup.add_human_user", async () => {
  const res = await admin.addHumanUser({
    organization: { orgId: cfg.orgId },
    profile: { givenName: "Node", familyName: "Client" },
    email: { email: cfg.email, isVerified: true },
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
  if (res.user?.state !== UserState.USER_STATE_INITIAL) return `state ${res.user?.state}, want INITIAL`;
  return true;
});

let code;
await checks.step("reset.return_code", async () => {
  const res = await admin.passwordReset({ userId, returnCode: {} });
  code = res.verificationCode;
  if (!code) return "no verificationCode in response";
  if (res.details?.resourceOwner !== cfg.orgId) {
    return `details.resourceOwner ${res.details?.resourceOwner}, want ${cfg.orgId}`;
  }
  return true;
});

const setWith = (client, id, verificationCode, options) =>
  client.setPassword(
    { userId: id, newPassword: { password: cfg.newPassword, changeRequired: false }, verificationCode },
    options,
  );

await expectError("set.wrong_code", (o) => setWith(anonymous, userId, WRONG_CODE, o), {
  code: GRPC.INVALID_ARGUMENT,
  id: "CODE-woT0xc",
  message: "Code is invalid (CODE-woT0xc)",
});

await checks.step("set.with_code", async () => {
  const res = await setWith(anonymous, userId, code);
  if (res.details?.resourceOwner !== cfg.orgId) {
    return `details.resourceOwner ${res.details?.resourceOwner}, want ${cfg.orgId}`;
  }
  return true;
});

await expectError("set.code_replayed", (o) => setWith(admin, userId, code, o), {
  code: GRPC.FAILED_PRECONDITION,
  id: "COMMAND-2M9fs",
  message: "Code not found (COMMAND-2M9fs)",
});

await checks.step("setup.get_user_active", async () => {
  const res = await admin.getUserByID({ userId });
  if (res.user?.state !== UserState.USER_STATE_ACTIVE) return `state ${res.user?.state}, want ACTIVE`;
  return true;
});

await expectError("set.unknown_user", (o) => setWith(anonymous, UNKNOWN_USER_ID, WRONG_CODE, o), {
  code: GRPC.FAILED_PRECONDITION,
  id: "COMMAND-2M9fs",
  message: "Code not found (COMMAND-2M9fs)",
});

const reset = (client, id, options) => client.passwordReset({ userId: id, returnCode: {} }, options);

const unknown = await expectError("reset.unknown_user", (o) => reset(admin, UNKNOWN_USER_ID, o), {
  code: GRPC.NOT_FOUND,
  id: "COMMAND-SAF4f",
  message: "User could not be found (COMMAND-SAF4f)",
});

await expectError("reset.no_token", (o) => reset(anonymous, userId, o), { code: GRPC.UNAUTHENTICATED });

const other = await expectError("reset.other_tenant", (o) => reset(admin, cfg.otherUserId, o), {
  code: GRPC.NOT_FOUND,
  id: "COMMAND-SAF4f",
});
checks.check(
  "reset.other_tenant_same_as_unknown",
  other !== undefined && unknown !== undefined && JSON.stringify(other) === JSON.stringify(unknown),
  { other, unknown },
);

// ---- management client, v1, with x-zitadel-orgid ---------------------------------------------

const mgmtAdmin = management(cfg.adminToken);
const mgmtSystem = management(cfg.systemToken);
const mgmtAnonymous = management(undefined);
const inOrg = { "x-zitadel-orgid": cfg.orgId };
const TYPE_EMAIL = 0;

await checks.step("v1.send_reset_notification", async () => {
  const res = await mgmtAdmin.sendHumanResetPasswordNotification(
    { userId, type: TYPE_EMAIL },
    { metadata: Metadata(inOrg) },
  );
  if (res.details?.resourceOwner !== cfg.orgId) {
    return `details.resourceOwner ${res.details?.resourceOwner}, want ${cfg.orgId}`;
  }
  return true;
});

await checks.step("v1.send_reset_notification_system_other_org", async () => {
  // A system token may act in any org it names.
  const res = await mgmtSystem.sendHumanResetPasswordNotification(
    { userId: cfg.otherUserId, type: TYPE_EMAIL },
    { metadata: Metadata({ "x-zitadel-orgid": cfg.otherOrgId }) },
  );
  if (res.details?.resourceOwner !== cfg.otherOrgId) {
    return `details.resourceOwner ${res.details?.resourceOwner}, want ${cfg.otherOrgId}`;
  }
  return true;
});

const sendV1 = (client, id) => (options) =>
  client.sendHumanResetPasswordNotification({ userId: id, type: TYPE_EMAIL }, options);

const v1Unknown = await expectError(
  "v1.unknown_user",
  sendV1(mgmtAdmin, UNKNOWN_USER_ID),
  { code: GRPC.FAILED_PRECONDITION, id: "COMMAND-Hj9ds", message: "User could not be found (COMMAND-Hj9ds)" },
  inOrg,
);

const v1Other = await expectError(
  "v1.other_tenant_user",
  sendV1(mgmtAdmin, cfg.otherUserId),
  { code: GRPC.FAILED_PRECONDITION, id: "COMMAND-Hj9ds" },
  inOrg,
);
checks.check(
  "v1.other_tenant_same_as_unknown",
  v1Other !== undefined && v1Unknown !== undefined && JSON.stringify(v1Other) === JSON.stringify(v1Unknown),
  { v1Other, v1Unknown },
);

await expectError(
  "v1.other_org_header",
  sendV1(mgmtAdmin, cfg.otherUserId),
  { code: GRPC.PERMISSION_DENIED },
  { "x-zitadel-orgid": cfg.otherOrgId },
);

await expectError("v1.no_token", sendV1(mgmtAnonymous, userId), { code: GRPC.UNAUTHENTICATED }, inOrg);

await expectError("v1.system_without_org", sendV1(mgmtSystem, userId), { code: GRPC.INVALID_ARGUMENT });

// v1 SetHumanPassword, then prove it took effect through v2beta SetPassword(current_password).
const V1_PASSWORD = `${cfg.newPassword}-v1`;
await checks.step("v1.set_human_password", async () => {
  const res = await mgmtAdmin.setHumanPassword(
    { userId, password: V1_PASSWORD, noChangeRequired: true },
    { metadata: Metadata(inOrg) },
  );
  if (res.details?.resourceOwner !== cfg.orgId) {
    return `details.resourceOwner ${res.details?.resourceOwner}, want ${cfg.orgId}`;
  }
  return true;
});

const setCurrent = (currentPassword) => (options) =>
  admin.setPassword(
    { userId, newPassword: { password: cfg.newPassword, changeRequired: false }, currentPassword },
    options,
  );

await expectError("set.wrong_current_password", setCurrent(`${cfg.newPassword}-nope`), {
  code: GRPC.INVALID_ARGUMENT,
});

await checks.step("set.with_current_password", async () => {
  await setCurrent(V1_PASSWORD)({});
  return true;
});

checks.finish();
