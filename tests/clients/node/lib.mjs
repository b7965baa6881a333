// Shared helpers of the Node client scripts: configuration from the environment, a list of
// named checks, and the JSON summary the Rust test (crates/rekey/tests/it/clients.rs) reads.

import { readFileSync } from "node:fs";

/** gRPC status codes used by the checks (google.rpc.Code). */
export const GRPC = {
  OK: 0,
  INVALID_ARGUMENT: 3,
  NOT_FOUND: 5,
  PERMISSION_DENIED: 7,
  FAILED_PRECONDITION: 9,
  UNAUTHENTICATED: 16,
};

/** The installed version of a package (read from its package.json, which `exports` may hide). */
export function packageVersion(name) {
  const url = new URL(`./node_modules/${name}/package.json`, import.meta.url);
  return JSON.parse(readFileSync(url, "utf8")).version;
}

export function env(name) {
  const value = process.env[name];
  if (!value) {
    throw new Error(`environment variable ${name} is not set`);
  }
  return value;
}

/** The configuration every script gets from the Rust test. */
export function config() {
  return {
    baseUrl: env("REKEY_BASE_URL"),
    orgId: env("REKEY_ORG_ID"),
    adminToken: env("REKEY_ADMIN_TOKEN"),
    systemToken: env("REKEY_SYSTEM_TOKEN"),
    otherOrgId: env("REKEY_OTHER_ORG_ID"),
    otherUserId: env("REKEY_OTHER_USER_ID"),
    email: env("REKEY_EMAIL"),
    // A user in state initial made with the CLI, used when AddHumanUser through the client
    // fails, so that the reset checks still run (and report on their own).
    fallbackUserId: env("REKEY_FALLBACK_USER_ID"),
    newPassword: env("REKEY_NEW_PASSWORD"),
  };
}

/** An id that names nothing (any 1..200 character string is a valid id). */
export const UNKNOWN_USER_ID = "999999999999999999";
/** A well-formed code (1..20 characters) that was never issued. */
export const WRONG_CODE = "WRONGCODE42";

/** Collects named checks; `finish` prints the summary and exits (0 only when all passed). */
export class Checks {
  constructor(client, version, form) {
    this.summary = { client, version, form, ok: true, checks: [], facts: {} };
  }

  check(name, ok, detail) {
    const entry = { name, ok: Boolean(ok) };
    if (!ok) {
      entry.detail = detail;
      this.summary.ok = false;
    }
    this.summary.checks.push(entry);
    return Boolean(ok);
  }

  fact(key, value) {
    this.summary.facts[key] = value;
  }

  /** Runs one step; an exception fails the check with its description instead of aborting. */
  async step(name, fn) {
    try {
      const detail = await fn();
      if (detail === true || detail === undefined) {
        return this.check(name, true);
      }
      return this.check(name, false, detail);
    } catch (err) {
      return this.check(name, false, `threw: ${describe(err)}`);
    }
  }

  /**
   * Runs `call`, which must fail; `normalize` turns the client's error into
   * `{ code, message, details: [{ id, message }] }`. Checks the gRPC code, the ErrorDetail id and,
   * when given, the exact message. Returns the normalized error (or undefined).
   */
  async expectError(name, call, normalize, want) {
    let normalized;
    try {
      const result = await call();
      this.check(name, false, `succeeded, wanted code ${want.code}: ${safeJson(result)}`);
      return undefined;
    } catch (err) {
      try {
        normalized = normalize(err);
      } catch (inner) {
        this.check(name, false, `unexpected error ${describe(err)} (${describe(inner)})`);
        return undefined;
      }
    }
    const problems = [];
    if (normalized.code !== want.code) {
      problems.push(`code ${normalized.code}, want ${want.code}`);
    }
    if (want.message !== undefined && normalized.message !== want.message) {
      problems.push(`message ${JSON.stringify(normalized.message)}, want ${JSON.stringify(want.message)}`);
    }
    if (want.id !== undefined) {
      const ids = (normalized.details || []).map((d) => d.id);
      if (!ids.includes(want.id)) {
        problems.push(`ErrorDetail ids ${JSON.stringify(ids)}, want ${want.id}`);
      }
    }
    this.check(name, problems.length === 0, `${problems.join("; ")} — got ${safeJson(normalized)}`);
    return normalized;
  }

  /** Prints the summary as one JSON line and exits. */
  finish() {
    process.stdout.write(`${JSON.stringify(this.summary)}\n`);
    process.exit(this.summary.ok ? 0 : 1);
  }
}

export function describe(err) {
  if (err && typeof err === "object") {
    const code = err.code !== undefined ? ` code=${err.code}` : "";
    return `${err.name || "Error"}${code}: ${err.message}`;
  }
  return String(err);
}

export function safeJson(value) {
  try {
    return JSON.stringify(value, (_k, v) => (typeof v === "bigint" ? v.toString() : v));
  } catch {
    return String(value);
  }
}

// --- minimal protobuf reading, for google.rpc.Status from gRPC trailers -----------------------

function readVarint(bytes, pos) {
  let result = 0n;
  let shift = 0n;
  for (;;) {
    if (pos >= bytes.length) throw new Error("truncated varint");
    const b = bytes[pos++];
    result |= BigInt(b & 0x7f) << shift;
    if ((b & 0x80) === 0) return [result, pos];
    shift += 7n;
  }
}

/** Splits a protobuf message into `[fieldNumber, value]` (varints as BigInt, others as bytes). */
export function protoFields(bytes) {
  const fields = [];
  let pos = 0;
  while (pos < bytes.length) {
    let key;
    [key, pos] = readVarint(bytes, pos);
    const field = Number(key >> 3n);
    const wire = Number(key & 7n);
    if (wire === 0) {
      let v;
      [v, pos] = readVarint(bytes, pos);
      fields.push([field, v]);
    } else if (wire === 2) {
      let len;
      [len, pos] = readVarint(bytes, pos);
      const end = pos + Number(len);
      if (end > bytes.length) throw new Error("truncated length-delimited field");
      fields.push([field, bytes.subarray(pos, end)]);
      pos = end;
    } else if (wire === 1) {
      fields.push([field, bytes.subarray(pos, pos + 8)]);
      pos += 8;
    } else if (wire === 5) {
      fields.push([field, bytes.subarray(pos, pos + 4)]);
      pos += 4;
    } else {
      throw new Error(`unsupported wire type ${wire}`);
    }
  }
  return fields;
}

const utf8 = new TextDecoder();

/** `zitadel.v1.ErrorDetail { string id = 1; string message = 2; }` */
export function decodeErrorDetail(bytes) {
  const detail = { id: "", message: "" };
  for (const [field, value] of protoFields(bytes)) {
    if (field === 1) detail.id = utf8.decode(value);
    if (field === 2) detail.message = utf8.decode(value);
  }
  return detail;
}

/**
 * Decodes `grpc-status-details-bin` (a `google.rpc.Status`) and returns
 * `{ code, message, details: [{ typeUrl, id, message }] }` for its zitadel.v1.ErrorDetail entries.
 */
export function decodeStatusDetails(bytes) {
  const status = { code: 0, message: "", details: [] };
  for (const [field, value] of protoFields(bytes)) {
    if (field === 1) status.code = Number(value);
    if (field === 2) status.message = utf8.decode(value);
    if (field === 3) {
      let typeUrl = "";
      let inner = new Uint8Array();
      for (const [f, v] of protoFields(value)) {
        if (f === 1) typeUrl = utf8.decode(v);
        if (f === 2) inner = v;
      }
      const entry = { typeUrl };
      if (typeUrl === "type.googleapis.com/zitadel.v1.ErrorDetail") {
        Object.assign(entry, decodeErrorDetail(inner));
      }
      status.details.push(entry);
    }
  }
  return status;
}
