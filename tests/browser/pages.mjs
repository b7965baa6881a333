// Drives Rekey's hosted pages and its CORS answers in Debian's headless Chromium, one browser for
// every scenario. crates/rekey/tests/it/browser.rs prepares the world (server, tenant, users,
// reset mails) and writes a plan; this script walks each scenario, checks what a person sees,
// runs axe-core on every page state, keeps a desktop and a phone screenshot of each, and prints
// one JSON summary line {ok, checks[], facts}. The Rust test then checks what the database and
// the mail sink say.
//
//   REKEY_BROWSER_PLAN=plan.json node tests/browser/pages.mjs
import { readFileSync, mkdirSync } from "node:fs";
import { createServer } from "node:http";
import { createRequire } from "node:module";
import path from "node:path";
import { chromium } from "playwright-core";

const require = createRequire(import.meta.url);
const axeSource = readFileSync(require.resolve("axe-core/axe.min.js"), "utf8");
const plan = JSON.parse(readFileSync(process.env.REKEY_BROWSER_PLAN, "utf8"));
mkdirSync(plan.artifacts, { recursive: true });

const checks = [];
const facts = {};
function check(name, ok, detail = "") {
  checks.push({ name, ok: Boolean(ok), detail: ok ? "" : String(detail) });
}

const TITLES = {
  en: {
    "reset-form": "Reset your password",
    "set-form": "Set your password",
    "forgot-form": "Forgot your password?",
    "forgot-sent": "Check your email",
    changed: "Your password has been changed",
    set: "Your password has been set",
  },
  de: {
    "reset-form": "Passwort zurücksetzen",
    "set-form": "Passwort festlegen",
    "forgot-form": "Passwort vergessen?",
    "forgot-sent": "Prüfen Sie Ihre E-Mails",
    changed: "Ihr Passwort wurde geändert",
    set: "Ihr Passwort wurde festgelegt",
  },
};

const browser = await chromium.launch({
  executablePath: process.env.REKEY_CHROMIUM || "/usr/bin/chromium",
  args: [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
  ],
});

let nextIp = 1;
/// A fresh context per scenario: its own cookies, language, JavaScript switch and client
/// address (Rekey trusts 127.0.0.1 as a proxy in this test, so each scenario's per-IP limits
/// are its own).
async function open({ lang = "en", js = true, forwardedFor = true } = {}) {
  const context = await browser.newContext({
    locale: lang === "de" ? "de-DE" : "en-US",
    javaScriptEnabled: js,
    viewport: { width: 1280, height: 800 },
    // Not on the CORS pages: scripts' requests would carry it too, and a browser asks a
    // preflight about every header a script adds.
    extraHTTPHeaders: forwardedFor ? { "x-forwarded-for": `10.9.0.${nextIp++}` } : {},
  });
  const page = await context.newPage();
  const problems = [];
  // Console errors show CSP violations ("Refused to …"); a failed subresource shows as a
  // response. The page itself may answer 400/429 on purpose, so documents are not counted.
  page.on("console", (msg) => {
    if (msg.type() === "error" && !msg.text().startsWith("Failed to load resource")) {
      problems.push(msg.text());
    }
  });
  page.on("response", (res) => {
    if (res.status() >= 400 && res.request().resourceType() !== "document") {
      problems.push(`${res.status()} ${res.url()}`);
    }
  });
  page.on("requestfailed", (req) => problems.push(`failed: ${req.url()}`));
  page.on("request", (req) => {
    if (forwardedFor && !req.url().startsWith(plan.base)) problems.push(`other origin: ${req.url()}`);
  });
  return { context, page, problems };
}

async function state(page) {
  return {
    state: await page.getAttribute("#main", "data-state"),
    error: await page.getAttribute("#main", "data-error"),
    h1: (await page.textContent("h1"))?.trim(),
    lang: await page.getAttribute("html", "lang"),
  };
}

/// Screenshots (desktop, then a 375 px phone) and axe-core for the state on screen, plus the
/// phone layout check: nothing wider than the screen, at 375 and at 320 px.
async function record(name, tab, { js = true } = {}) {
  const { page, problems } = tab;
  await page.screenshot({ path: path.join(plan.artifacts, `${name}-desktop.png`), fullPage: true });
  for (const width of [375, 320]) {
    await page.setViewportSize({ width, height: 740 });
    if (width === 375) {
      await page.screenshot({ path: path.join(plan.artifacts, `${name}-phone.png`), fullPage: true });
    }
    if (js) {
      const overflow = await page.evaluate(
        () => document.documentElement.scrollWidth - document.documentElement.clientWidth,
      );
      check(`${name}.fits_${width}px`, overflow <= 0, `${overflow}px wider than the screen`);
    }
  }
  await page.setViewportSize({ width: 1280, height: 800 });
  if (js) {
    await page.evaluate(axeSource);
    const result = await page.evaluate(() =>
      // eslint-disable-next-line no-undef
      axe.run(document, { resultTypes: ["violations"] }),
    );
    const serious = result.violations.filter((v) => ["serious", "critical"].includes(v.impact));
    check(
      `${name}.axe`,
      serious.length === 0,
      serious.map((v) => `${v.id}: ${v.nodes.map((n) => n.target.join(" ")).join("; ")}`).join(" | "),
    );
    facts[`${name}.axe_minor`] = result.violations.map((v) => v.id);
  }
  check(`${name}.no_console_errors`, problems.length === 0, problems.join(" | "));
}

async function submit(page) {
  await Promise.all([page.waitForNavigation({ waitUntil: "load" }), page.click("button[type=submit]")]);
}

async function fillPassword(page, password, confirm = password) {
  await page.fill("#password", password);
  await page.fill("#confirm", confirm);
}

/// Opens a link from a mail and checks the form: title, language, the code pre-filled, the
/// password fields empty and marked as new passwords, the tenant's name shown.
async function openForm(name, link, { lang = "en", js = true, kind = "reset-form" } = {}) {
  const tab = await open({ lang, js });
  const response = await tab.page.goto(link);
  const headers = response.headers();
  check(`${name}.get_200`, response.status() === 200, response.status());
  const s = await state(tab.page);
  check(`${name}.form_state`, s.state === kind, JSON.stringify(s));
  check(`${name}.form_title`, s.h1 === TITLES[lang][kind], s.h1);
  check(`${name}.html_lang`, s.lang === lang, s.lang);
  const code = new URL(link).searchParams.get("code");
  check(`${name}.code_prefilled`, (await tab.page.inputValue("#code")) === code);
  check(
    `${name}.new_password_autocomplete`,
    (await tab.page.getAttribute("#password", "autocomplete")) === "new-password",
  );
  check(`${name}.tenant_name`, (await tab.page.textContent("body")).includes(plan.tenantName));
  securityHeaders(name, headers);
  return tab;
}

function securityHeaders(name, headers) {
  const csp = headers["content-security-policy"] || "";
  check(
    `${name}.headers`,
    headers["referrer-policy"] === "no-referrer" &&
      headers["x-frame-options"] === "DENY" &&
      csp.includes("frame-ancestors 'none'") &&
      !csp.includes("unsafe-inline") &&
      (headers["cache-control"] || "").includes("no-store"),
    JSON.stringify(headers),
  );
}

// --- A person resets a password from the mail's link ---------------------------------------
async function success(name, link, { lang = "en", js = true, kind = "reset-form", done = "changed" } = {}) {
  const tab = await openForm(name, link, { lang, js, kind });
  await record(`${name}-form`, tab, { js });
  await fillPassword(tab.page, plan.newPassword);
  await submit(tab.page);
  const s = await state(tab.page);
  check(`${name}.success_state`, s.state === "success", JSON.stringify(s));
  check(`${name}.success_title`, s.h1 === TITLES[lang][done], s.h1);
  const login = await tab.page.getAttribute("#login-link", "href").catch(() => null);
  check(`${name}.login_link`, login === plan.loginUrl, login);
  check(
    `${name}.password_not_echoed`,
    !(await tab.page.content()).includes(plan.newPassword),
  );
  await record(`${name}-success`, tab, { js });
  await tab.context.close();
}

/// The form comes back with an error tied to a field; `expect` names the error and the field.
async function failing(name, link, { lang = "en", js = true, code, password, confirm, error, field, status = 200 }) {
  const tab = await openForm(name, link, { lang, js });
  if (code !== undefined) await tab.page.fill("#code", code);
  await fillPassword(tab.page, password, confirm ?? password);
  const [response] = await Promise.all([
    tab.page.waitForResponse((r) => r.request().method() === "POST"),
    submit(tab.page),
  ]);
  const s = await state(tab.page);
  check(`${name}.error`, s.error === error, JSON.stringify(s));
  check(`${name}.status`, response.status() === status, response.status());
  if (field) {
    const described = (await tab.page.getAttribute(`#${field}`, "aria-describedby")) || "";
    check(`${name}.error_tied_to_field`, described.includes(`${field}-error`), described);
    check(`${name}.aria_invalid`, (await tab.page.getAttribute(`#${field}`, "aria-invalid")) === "true");
    check(`${name}.error_text`, ((await tab.page.textContent(`#${field}-error`)) || "").trim().length > 0);
  }
  check(`${name}.password_not_echoed`, (await tab.page.inputValue("#password")) === "");
  await record(name, tab, { js });
  return tab;
}

async function forgot(name, email, { lang = "en", js = true } = {}) {
  const tab = await open({ lang, js });
  const response = await tab.page.goto(`${plan.base}/ui/password/forgot?cname=${plan.cname}`);
  securityHeaders(name, response.headers());
  let s = await state(tab.page);
  check(`${name}.form_state`, s.state === "forgot-form" && s.h1 === TITLES[lang]["forgot-form"], JSON.stringify(s));
  check(`${name}.cname_prefilled`, (await tab.page.inputValue("#cname")) === plan.cname);
  await record(`${name}-form`, tab, { js });
  await tab.page.fill("#email", email);
  const started = Date.now();
  await submit(tab.page);
  facts[`${name}.took_ms`] = Date.now() - started;
  s = await state(tab.page);
  check(`${name}.sent_state`, s.state === "forgot-sent" && s.h1 === TITLES[lang]["forgot-sent"], JSON.stringify(s));
  const main = await tab.page.innerHTML("#main");
  await record(`${name}-sent`, tab, { js });
  await tab.context.close();
  return main;
}

// --- Cross-origin calls (SPEC §5) ------------------------------------------------------------
async function cors() {
  const page = (origin) =>
    `<!doctype html><html lang="en"><head><title>${origin}</title></head><body><main>app</main></body></html>`;
  const servers = await Promise.all(
    [plan.cors.allowedPort, plan.cors.refusedPort].map(
      (port) =>
        new Promise((resolve) => {
          const server = createServer((_, res) => {
            res.writeHead(200, { "content-type": "text/html" });
            res.end(page(port));
          }).listen(port, "127.0.0.1", () => resolve(server));
        }),
    ),
  );
  const calls = async (tab) =>
    tab.page.evaluate(
      async ({ base, token, userId }) => {
        const out = {};
        try {
          const r = await fetch(`${base}/v2/users/${userId}/password_reset`, {
            method: "POST",
            headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
            body: JSON.stringify({ returnCode: {} }),
          });
          out.rest = { status: r.status, hasCode: "verificationCode" in (await r.json()) };
        } catch (e) {
          out.rest = { error: String(e) };
        }
        try {
          const r = await fetch(`${base}/zitadel.user.v2.UserService/PasswordReset`, {
            method: "POST",
            headers: {
              authorization: `Bearer ${token}`,
              "content-type": "application/json",
              "connect-protocol-version": "1",
              "connect-timeout-ms": "5000",
            },
            body: JSON.stringify({ userId, returnCode: {} }),
          });
          out.connect = { status: r.status, hasCode: "verificationCode" in (await r.json()) };
        } catch (e) {
          out.connect = { error: String(e) };
        }
        try {
          // gRPC-Web without a token: UNAUTHENTICATED in a trailers-only answer, whose status
          // a script can read only when CORS exposes it.
          const r = await fetch(`${base}/zitadel.user.v2.UserService/PasswordReset`, {
            method: "POST",
            headers: {
              "content-type": "application/grpc-web+proto",
              "x-grpc-web": "1",
              "x-user-agent": "grpc-web-javascript/0.1",
            },
            // PasswordResetRequest { user_id (1) = "123" } in one uncompressed frame.
            body: new Uint8Array([0, 0, 0, 0, 5, 0x0a, 3, 0x31, 0x32, 0x33]),
          });
          out.grpcWeb = { status: r.status, grpcStatus: r.headers.get("grpc-status") };
        } catch (e) {
          out.grpcWeb = { error: String(e) };
        }
        return out;
      },
      { base: plan.base, token: plan.cors.token, userId: plan.cors.userId },
    );
  for (const [label, port] of [
    ["allowed", plan.cors.allowedPort],
    ["refused", plan.cors.refusedPort],
  ]) {
    const tab = await open({ forwardedFor: false });
    await tab.page.goto(`http://127.0.0.1:${port}/`);
    const out = await calls(tab);
    facts[`cors.${label}`] = out;
    if (label === "allowed") {
      check("cors.allowed.rest", out.rest.status === 200 && out.rest.hasCode, JSON.stringify(out.rest));
      check("cors.allowed.connect", out.connect.status === 200 && out.connect.hasCode, JSON.stringify(out.connect));
      check("cors.allowed.grpc_web_status_exposed", out.grpcWeb.grpcStatus === "16", JSON.stringify(out.grpcWeb));
    } else {
      for (const form of ["rest", "connect", "grpcWeb"]) {
        check(`cors.refused.${form}`, Boolean(out[form].error), JSON.stringify(out[form]));
      }
    }
    await tab.context.close();
  }
  await Promise.all(servers.map((s) => new Promise((resolve) => s.close(resolve))));
}

// --- The scenarios ------------------------------------------------------------------------------
const s = plan.scenarios;
const steps = [
  ["success_en", () => success("success_en", s.success_en.link)],
  ["success_de", () => success("success_de", s.success_de.link, { lang: "de" })],
  ["success_nojs", () => success("success_nojs", s.success_nojs.link, { js: false })],
  ["onboarding", () => success("onboarding", s.onboarding.link, { kind: "set-form", done: "set" })],
  [
    "wrong_code",
    async () => {
      const tab = await failing("wrong_code", s.wrong_code.link, {
        code: "WRONGCODE",
        password: plan.newPassword,
        error: "code-invalid",
        field: "code",
        status: 400,
      });
      await tab.context.close();
    },
  ],
  [
    "wrong_code_de",
    async () => {
      const tab = await failing("wrong_code_de", s.wrong_code_de.link, {
        lang: "de",
        code: "WRONGCODE",
        password: plan.newPassword,
        error: "code-invalid",
        field: "code",
        status: 400,
      });
      await tab.context.close();
    },
  ],
  [
    "used_up",
    async () => {
      // Five wrong codes use the code up; the right one is then refused too.
      const tab = await openForm("used_up", s.used_up.link);
      const right = await tab.page.inputValue("#code");
      for (let i = 0; i < 5; i++) {
        await tab.page.fill("#code", `WRONG${i}XX`);
        await fillPassword(tab.page, plan.newPassword);
        await submit(tab.page);
      }
      await tab.page.fill("#code", right);
      await fillPassword(tab.page, plan.newPassword);
      await submit(tab.page);
      const st = await state(tab.page);
      check("used_up.error", st.error === "code-used-up", JSON.stringify(st));
      check("used_up.new_link", (await tab.page.getAttribute("#new-link", "href"))?.startsWith("/ui/password/forgot"));
      await record("used_up", tab);
      await tab.context.close();
    },
  ],
  [
    "expired",
    async () => {
      const tab = await failing("expired", s.expired.link, {
        password: plan.newPassword,
        error: "code-expired",
        status: 400,
      });
      check("expired.new_link", (await tab.page.getAttribute("#new-link", "href"))?.startsWith("/ui/password/forgot"));
      await tab.context.close();
    },
  ],
  [
    "policy",
    async () => {
      const tab = await failing("policy", s.policy.link, {
        password: "short",
        error: "policy",
        field: "password",
        status: 400,
      });
      const rules = await tab.page.$$eval("#password-error li[data-rule]", (lis) => lis.map((li) => li.dataset.rule));
      check("policy.names_rule", rules.includes("min_length"), JSON.stringify(rules));
      await tab.context.close();
    },
  ],
  [
    "policy_de",
    async () => {
      const tab = await failing("policy_de", s.policy_de.link, {
        lang: "de",
        password: "password",
        error: "policy",
        field: "password",
        status: 400,
      });
      const rules = await tab.page.$$eval("#password-error li[data-rule]", (lis) => lis.map((li) => li.dataset.rule));
      check("policy_de.names_rules", rules.includes("common") && rules.includes("min_length"), JSON.stringify(rules));
      await tab.context.close();
    },
  ],
  [
    "policy_nojs",
    async () => {
      const tab = await failing("policy_nojs", s.policy_nojs.link, {
        js: false,
        password: "short",
        error: "policy",
        field: "password",
        status: 400,
      });
      await tab.context.close();
    },
  ],
  [
    "mismatch",
    async () => {
      const tab = await failing("mismatch", s.mismatch.link, {
        password: plan.newPassword,
        confirm: `${plan.newPassword}-typo`,
        error: "mismatch",
        field: "confirm",
        status: 400,
      });
      await tab.context.close();
    },
  ],
  [
    "mismatch_de",
    async () => {
      const tab = await failing("mismatch_de", s.mismatch_de.link, {
        lang: "de",
        password: plan.newPassword,
        confirm: `${plan.newPassword}-typo`,
        error: "mismatch",
        field: "confirm",
        status: 400,
      });
      await tab.context.close();
    },
  ],
  [
    "rate_limited",
    async () => {
      // More code submissions from one address than the per-IP limit allows. The limit counts in
      // fixed one-minute windows, so on a slow machine the tries may straddle a window edge: the
      // refusal must come by the time two windows' worth of tries have been made.
      const tab = await openForm("rate_limited", s.rate_limited.link);
      let last;
      let tries = 0;
      while (tries <= 2 * plan.codeTriesPerIp) {
        await tab.page.fill("#code", `NOPE${tries}XYZ`);
        await fillPassword(tab.page, plan.newPassword);
        [last] = await Promise.all([
          tab.page.waitForResponse((r) => r.request().method() === "POST"),
          submit(tab.page),
        ]);
        tries += 1;
        if (last.status() === 429) break;
      }
      facts["rate_limited.tries"] = tries;
      const st = await state(tab.page);
      check("rate_limited.status", last.status() === 429, last.status());
      check("rate_limited.not_before_limit", tries > plan.codeTriesPerIp, tries);
      check("rate_limited.retry_after", Number(last.headers()["retry-after"]) > 0, last.headers()["retry-after"]);
      check("rate_limited.error", st.error === "rate-limited", JSON.stringify(st));
      await record("rate_limited", tab);
      await tab.context.close();
    },
  ],
  [
    "forgot",
    async () => {
      const known = await forgot("forgot_known", s.forgot.known);
      const unknown = await forgot("forgot_unknown", s.forgot.unknown);
      check("forgot.identical_pages", known === unknown, `${known}\n----\n${unknown}`);
      await forgot("forgot_de", s.forgot.unknown_de, { lang: "de" });
      await forgot("forgot_nojs", s.forgot.unknown, { js: false });
    },
  ],
  [
    "language_switch",
    async () => {
      const tab = await open({ lang: "en" });
      await tab.page.goto(`${plan.base}/ui/password/forgot`);
      await Promise.all([tab.page.waitForNavigation(), tab.page.click('a[hreflang="de"]')]);
      const st = await state(tab.page);
      check("language_switch.de", st.lang === "de" && st.h1 === TITLES.de["forgot-form"], JSON.stringify(st));
      await tab.context.close();
    },
  ],
  [
    "docs",
    async () => {
      // Swagger UI renders the served document under its CSP, from Rekey's own assets only
      // (`open` records any request to another origin and any CSP violation).
      const tab = await open();
      const response = await tab.page.goto(`${plan.base}/docs`);
      check("docs.get_200", response.status() === 200, response.status());
      await tab.page.waitForSelector(".opblock", { timeout: 15000 });
      const operations = await tab.page.$$eval(".opblock-summary-path", (els) =>
        els.map((e) => e.getAttribute("data-path")),
      );
      facts["docs.operations"] = operations.length;
      check(
        "docs.renders_operations",
        operations.includes("/v2/users/{user_id}/password_reset") &&
          operations.includes("/no_auth/send_password_email"),
        JSON.stringify(operations),
      );
      await tab.page.screenshot({ path: path.join(plan.artifacts, "docs-desktop.png") });
      check("docs.no_console_errors", tab.problems.length === 0, tab.problems.join(" | "));
      await tab.context.close();
    },
  ],
  ["cors", cors],
];

const only = process.env.REKEY_BROWSER_ONLY;
for (const [name, step] of steps) {
  if (only && !only.split(",").includes(name)) continue;
  try {
    await step();
  } catch (e) {
    check(`${name}.ran`, false, e.stack || e);
  }
}
await browser.close();
const ok = checks.length > 0 && checks.every((c) => c.ok);
console.log(JSON.stringify({ ok, checks, facts }));
process.exit(ok ? 0 : 1);
