// Drives the ICE console in Debian's chromium (headless, through playwright-core) against a running `ice serve`,
// while this script plays the agent over the API. Run by the Rust test `console.rs`, which starts the server and
// passes: ICE_URL, AGENT_TOKEN, APPROVER_TOKEN, AUDITOR_TOKEN, OPERATOR_TOKEN, RUN, SHOTS (a directory for
// screenshots).
// With MODE=big (a ledger of many events) it only logs in as the auditor and measures the time to the first
// rendered event and to scroll the timeline, printing `first paint: N ms; scrolling: M ms`.
// Exits non-zero, naming the failed step, when the console does not do what it must.
import { createRequire } from "node:module";
import { chromium } from "playwright-core";

const axePath = createRequire(import.meta.url).resolve("axe-core/axe.min.js");

const env = process.env;
const url = env.ICE_URL;
const step = (name) => console.log(`step: ${name}`);
const check = (ok, what) => { if (!ok) throw new Error(`check failed: ${what}`); };

async function api(token, method, path, body) {
  const r = await fetch(url + path, { method, headers: { Authorization: `Bearer ${token}`,
    ...(body ? { "Content-Type": "application/json" } : {}) }, body: body ? JSON.stringify(body) : undefined });
  const text = await r.text();
  let json = null;
  try { json = JSON.parse(text); } catch { json = text; }
  return { status: r.status, body: json };
}

async function propose(path) {
  const r = await api(env.AGENT_TOKEN, "POST", "/v1/proposals",
    { run: env.RUN, action: "fs.delete", resource: `file:${path}`, args: { path } });
  check(r.status === 200, `proposing fs.delete ${path}: ${r.status} ${JSON.stringify(r.body)}`);
  check(r.body.verdict === "require_approval", `fs.delete needs approval, got ${r.body.verdict}`);
  return r.body;
}

const browser = await chromium.launch({
  executablePath: env.CHROMIUM || "/usr/bin/chromium",
  headless: true,
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync"],
});
const failures = [];

async function big() {
  const page = await (await browser.newContext({ viewport: { width: 1400, height: 900 } })).newPage();
  page.on("pageerror", (e) => failures.push(`page error: ${e.message}`));
  await page.goto(`${url}/`);
  await page.fill("#token", env.AUDITOR_TOKEN);
  const t0 = Date.now();
  await page.click("#login-form button[type=submit]");
  await page.waitForSelector("#events tr.event", { timeout: 30000 });
  const paint = Date.now() - t0;
  await page.waitForSelector("#live:has-text('live')", { timeout: 30000 });
  const scrolling = await page.evaluate(async () => {
    const t = performance.now();
    for (let i = 0; i < 30; i++) {
      window.scrollBy(0, 600);
      await new Promise((r) => requestAnimationFrame(() => r()));
    }
    return performance.now() - t;
  });
  const rows = await page.locator("#events tr.event").count();
  const head = await page.locator("#events tr.event").first().getAttribute("data-seq");
  check(Number(head) >= Number(env.MIN_HEAD || 0), `the newest event is shown first (seq ${head})`);
  await page.screenshot({ path: `${env.SHOTS}/timeline-big.png` });
  console.log(`first paint: ${paint} ms; scrolling: ${scrolling.toFixed(0)} ms for 30 steps; ${rows} rows; head ${head}`);
}

async function scenario() {
  const context = await browser.newContext({ viewport: { width: 1400, height: 900 } });
  const page = await context.newPage();
  page.on("pageerror", (e) => failures.push(`page error: ${e.message}`));
  page.on("console", (m) => { if (m.type() === "error") console.log(`[browser] ${m.text()}`); });
  const outside = [];
  page.on("request", (r) => { if (!r.url().startsWith(url) && !r.url().startsWith(url.replace("http", "ws"))) outside.push(r.url()); });

  step("log in as the approver");
  await page.goto(`${url}/`);
  await page.fill("#token", env.APPROVER_TOKEN);
  await page.click("#login-form button[type=submit]");
  await page.waitForSelector("#who:has-text('human:carol')", { timeout: 30000 });
  await page.waitForSelector("#live:has-text('live')", { timeout: 30000 });
  await page.waitForSelector("#proof-banner:has-text('chain verified')", { timeout: 30000 });
  await page.waitForSelector("#proof-banner:has-text('cosigned seq')", { timeout: 30000 });
  await page.click("#tab-proof");
  await page.waitForSelector("#checkpoints tr:has-text('cosigned')", { timeout: 30000 });

  step("an agent proposes an irreversible delete: the approval appears live, with its exact args");
  await page.click("#tab-approvals");
  const first = await propose("notes/old.md");
  const card = page.locator(`article[data-approval='${first.approval_id}']`);
  await card.waitFor({ timeout: 30000 });
  const text = await card.innerText();
  check(text.includes("agent:writer asks to fs.delete file:notes/old.md"), `approval card names who and what: ${text}`);
  check(text.includes('"path": "notes/old.md"'), `approval card shows the exact args: ${text}`);
  const detail = await api(env.APPROVER_TOKEN, "GET", `/v1/proposals/${first.proposal_id}`);
  const hash = detail.body.approval.args_hash || detail.body.proposal.payload.args_hash;
  check(text.includes(hash), `the args hash the approver signs (${hash}) is shown`);
  await page.screenshot({ path: `${env.SHOTS}/approval.png`, fullPage: true });

  step("approve it with a comment; the agent executes; the outcome arrives on the timeline without a reload");
  await card.locator("input").fill("old notes, fine to delete");
  await card.locator("button.approve").click();
  await card.waitFor({ state: "detached", timeout: 30000 });
  const approved = await api(env.AGENT_TOKEN, "GET", `/v1/proposals/${first.proposal_id}`);
  const permit = approved.body.permit && approved.body.permit.permit_id;
  check(permit, `a permit was issued: ${JSON.stringify(approved.body)}`);
  const exec = await api(env.AGENT_TOKEN, "POST", `/v1/permits/${permit}/exec`, {});
  check(exec.status === 200, `exec: ${exec.status} ${JSON.stringify(exec.body)}`);
  await page.click("#tab-timeline");
  await page.waitForSelector("#events tr[data-kind='EffectCompleted']", { timeout: 30000 });
  await page.waitForSelector("#events tr[data-kind='ApprovalGranted']", { timeout: 30000 });
  await page.locator("#events tr[data-kind='EffectCompleted']").first().click();
  await page.waitForSelector("#events tr.detail pre.payload", { timeout: 30000 });
  await page.screenshot({ path: `${env.SHOTS}/timeline.png`, fullPage: true });

  step("the same action on the same resource again: its args are shown as a diff against the approved ones");
  await page.click("#tab-approvals");
  const again = await propose("notes/old.md");
  const card1b = page.locator(`article[data-approval='${again.approval_id}']`);
  await card1b.waitFor({ timeout: 30000 });
  check((await card1b.innerText()).includes("diff against the last approved args"), "the diff is shown");
  const denyAgain = await api(env.APPROVER_TOKEN, "POST", `/v1/approvals/${again.approval_id}/deny`, {});
  check(denyAgain.status === 200, `deny: ${denyAgain.status}`);
  await card1b.waitFor({ state: "detached", timeout: 30000 });

  step("a second delete is denied from the console");
  await page.click("#tab-approvals");
  const second = await propose("notes/keep.md");
  const card2 = page.locator(`article[data-approval='${second.approval_id}']`);
  await card2.waitFor({ timeout: 30000 });
  await card2.locator("button.deny").click();
  await card2.waitFor({ state: "detached", timeout: 30000 });
  await page.click("#tab-timeline");
  await page.waitForSelector("#events tr[data-kind='ApprovalDenied']", { timeout: 30000 });
  const denied = await api(env.AGENT_TOKEN, "GET", `/v1/proposals/${second.proposal_id}`);
  check(!denied.body.permit, "a denied approval issues no permit");

  step("the run view shows the path and the proposal tree");
  await page.click("#tab-runs");
  await page.locator(`#runs tr:has(td[title='${env.RUN}'])`).click();
  await page.waitForSelector("#run-detail .state-path span.here", { timeout: 30000 });
  const tree = await page.locator("#run-detail").innerText();
  check(tree.includes("fs.delete file:notes/old.md") && tree.includes("EffectCompleted"), `run tree: ${tree}`);
  check(tree.includes("ApprovalGranted") && tree.includes("ApprovalDenied"), `run tree shows the answers: ${tree}`);
  check(tree.includes("fs.delete file:notes/old.md → would propose fs.restore file:notes/old.md"),
    `the rollback preview names the compensation: ${tree}`);
  check(await page.locator("button.rollback-run").count() === 0, "an approver cannot roll back");
  await page.screenshot({ path: `${env.SHOTS}/run.png`, fullPage: true });
  check(outside.length === 0, `requests left the server's origin: ${outside.join(", ")}`);

  step("an auditor sees the queue without approve buttons, and the API refuses its approval");
  const third = await propose("notes/third.md");
  const auditor = await (await browser.newContext()).newPage();
  await auditor.goto(`${url}/`);
  await auditor.fill("#token", env.AUDITOR_TOKEN);
  await auditor.click("#login-form button[type=submit]");
  await auditor.waitForSelector("#who:has-text('human:dana')", { timeout: 30000 });
  await auditor.click("#tab-approvals");
  const card3 = auditor.locator(`article[data-approval='${third.approval_id}']`);
  await card3.waitFor({ timeout: 30000 });
  check(await card3.locator("button.approve").count() === 0, "an auditor sees no approve button");
  const refused = await api(env.AUDITOR_TOKEN, "POST", `/v1/approvals/${third.approval_id}/approve`,
    { args_hash: third.args_hash });
  check(refused.status === 403, `an auditor's approval is refused with 403, got ${refused.status}`);

  step("an operator sees grants, suspends the agent, and asks what a stricter policy would have changed");
  const ops = await (await browser.newContext({ viewport: { width: 1400, height: 900 } })).newPage();
  ops.on("pageerror", (e) => failures.push(`page error: ${e.message}`));
  await ops.goto(`${url}/`);
  await ops.fill("#token", env.OPERATOR_TOKEN);
  await ops.click("#login-form button[type=submit]");
  await ops.waitForSelector("#who:has-text('human:olga')", { timeout: 30000 });
  step("the operator reads memory with its provenance and who read it, and deprecates it");
  const search = await api(env.AGENT_TOKEN, "POST", "/v1/memory/search", { query: "where do release notes go" });
  check(search.status === 200 && search.body.items.length === 1 && search.body.items[0].item_id === env.MEMORY_ITEM,
    `the agent finds the item within its grant: ${JSON.stringify(search.body)}`);
  await ops.click("#tab-memory");
  const memRow = ops.locator(`#memory tr[data-item='${env.MEMORY_ITEM}']`);
  await memRow.waitFor({ timeout: 30000 });
  check((await memRow.locator("td.status").innerText()).startsWith("ACTIVE"), "the item is ACTIVE");
  await memRow.locator("button.memory-event", { hasText: "EffectCompleted" }).click();
  await ops.waitForSelector(`#memory tr[data-item='${env.MEMORY_ITEM}'] pre.memory-event:has-text('EffectCompleted')`, { timeout: 20000 });
  await memRow.locator("button.memory-reads").click();
  await ops.waitForSelector(`#memory tr[data-item='${env.MEMORY_ITEM}'] pre.memory-reads:has-text('agent:writer search')`, { timeout: 20000 });
  await memRow.locator("input").fill("the notes moved");
  await memRow.locator("button.memory-deprecate").click();
  await ops.waitForSelector(`#memory tr[data-item='${env.MEMORY_ITEM}'] td.status:has-text('DEPRECATED')`, { timeout: 20000 });
  const gone = await api(env.AGENT_TOKEN, "POST", "/v1/memory/search", { query: "where do release notes go" });
  check(gone.body.items.length === 0, `a deprecated item is no longer found: ${JSON.stringify(gone.body)}`);
  await ops.click("#tab-grants");
  await ops.waitForSelector("#grants tr:has-text('agent:writer'):has-text('fs.delete')", { timeout: 30000 });
  await ops.click("#tab-agents");
  const agentRow = ops.locator("#agents tr[data-agent='agent:writer']");
  await agentRow.waitFor({ timeout: 30000 });
  await agentRow.locator("input").fill("reviewing its deletes");
  await agentRow.locator("button.agent-suspend").click();
  await ops.waitForSelector("#agents tr[data-agent='agent:writer'] td.status:has-text('suspended')", { timeout: 30000 });
  const blocked = await api(env.AGENT_TOKEN, "POST", "/v1/proposals",
    { run: env.RUN, action: "fs.delete", resource: "file:notes/third.md", args: { path: "notes/third.md" } });
  check(blocked.body.verdict === "deny" || blocked.body.verdict === "suspend", `a suspended agent is denied: ${JSON.stringify(blocked.body)}`);
  await ops.click("#tab-policy");
  await ops.waitForSelector("#policy:has-text('irreversible-needs-approval')", { timeout: 30000 });
  await ops.fill("#whatif-name", "stricter.cedar");
  await ops.fill("#whatif-text", '@id("no-deletes")\nforbid (principal, action == Ice::Action::"fs.delete", resource);\n');
  await ops.click("#whatif-form button[type=submit]");
  await ops.waitForSelector("#whatif-result:has-text('would change')", { timeout: 20000 });
  const whatif = await ops.locator("#whatif-result").innerText();
  check(/[1-9]\d* would change/.test(whatif) && whatif.includes("would be deny"), `what-if lists the flipped decisions: ${whatif}`);
  await ops.screenshot({ path: `${env.SHOTS}/policy.png`, fullPage: true });
  await ops.click("#tab-runs");
  await ops.locator(`#runs tr:has(td[title='${env.RUN}'])`).click();
  await ops.locator("button.rollback-run").click();
  await ops.waitForSelector("#run-detail .rollback:has-text('compensated')", { timeout: 20000 });

  step("the operator exports the run's audit bundle from the proof view");
  const cp = await api(env.OPERATOR_TOKEN, "POST", "/v1/checkpoints");
  check(cp.status === 200, `checkpoint: ${cp.status} ${JSON.stringify(cp.body)}`);
  await ops.click("#tab-proof");
  await ops.fill("#export-form input[name=run]", env.RUN);
  const [download] = await Promise.all([ops.waitForEvent("download", { timeout: 20000 }),
    ops.click("#export-form button[type=submit]")]);
  await download.saveAs(`${env.SHOTS}/bundle.ndjson`);

  step("a bad token is refused at login");
  const stranger = await (await browser.newContext()).newPage();
  await stranger.goto(`${url}/`);
  await stranger.fill("#token", "ice_not_a_token");
  await stranger.click("#login-form button[type=submit]");
  await stranger.waitForSelector("#login-error:has-text('ICE-E09')", { timeout: 30000 });
}

// axe-core (WCAG 2 A and AA rules) on every view, as an operator (who sees the most controls). The page's CSP
// forbids injected scripts, as it should; this context alone bypasses it to load axe.
async function accessibility() {
  step("every view passes axe-core's WCAG 2 A/AA rules without a serious or critical violation");
  const page = await (await browser.newContext({ bypassCSP: true, viewport: { width: 1400, height: 900 } })).newPage();
  await page.goto(`${url}/`);
  await page.fill("#token", env.OPERATOR_TOKEN);
  await page.click("#login-form button[type=submit]");
  await page.waitForSelector("#live:has-text('live')", { timeout: 30000 });
  const found = [];
  for (const tab of ["timeline", "approvals", "runs", "budgets", "grants", "agents", "memory", "policy", "proof"]) {
    await page.click(`#tab-${tab}`);
    if (tab === "runs") await page.locator("#runs tr").first().click();
    await page.waitForTimeout(300);
    await page.addScriptTag({ path: axePath });
    const result = await page.evaluate(async () =>
      // eslint-disable-next-line no-undef
      (await axe.run(document, { runOnly: ["wcag2a", "wcag2aa"] })).violations.map((v) => ({ id: v.id, impact: v.impact,
        nodes: v.nodes.length, help: v.help })));
    for (const v of result) found.push({ tab, ...v });
  }
  for (const v of found) console.log(`axe: ${v.tab}: ${v.impact} ${v.id} (${v.nodes} node(s)): ${v.help}`);
  const bad = found.filter((v) => v.impact === "serious" || v.impact === "critical");
  check(bad.length === 0, `axe found serious or critical violations: ${JSON.stringify(bad)}`);
}

try {
  await (env.MODE === "big" ? big() : scenario().then(accessibility));
} catch (e) {
  failures.push(e.stack || String(e));
} finally {
  await browser.close();
}
if (failures.length) {
  console.error(failures.join("\n"));
  process.exit(1);
}
console.log("console e2e: ok");
