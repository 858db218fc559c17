// The demo's main page: submit jobs through the real job API and watch their events arrive.
import { api, chooseUser, connect, currentUser, getToken, loadConfig, showToast } from "/demo/static/demo-common.js";

const ORDER = {
  items: [
    { sku: "COFFEE-1", name: "Coffee", quantity: 2, unit_amount: 450 },
    { sku: "CROISSANT", name: "Croissant", quantity: 1, unit_amount: 320 },
  ],
  currency: "usd",
};
const money = (minor, currency = "usd") =>
  new Intl.NumberFormat(undefined, { style: "currency", currency }).format(minor / 100);

const config = await loadConfig();
const user = currentUser(config);
let lastOrderId = null;

function renderUsers() {
  const box = document.getElementById("users");
  for (const candidate of config.users) {
    const button = document.createElement("button");
    button.className = `user${candidate.id === user.id ? " selected" : ""}`;
    button.dataset.user = candidate.id;
    button.innerHTML = `<b></b><small></small>`;
    button.querySelector("b").textContent = candidate.name;
    button.querySelector("small").textContent = candidate.business;
    button.addEventListener("click", () => chooseUser(candidate.id));
    box.append(button);
  }
  document.getElementById("business").textContent = user.business;
}

const FINISHED = new Set(["succeeded", "failed", "cancelled"]);

// A row per job: its kind, where it stands, a progress bar, and Cancel while it can be asked.
function jobRow(jobId, kind) {
  let row = document.querySelector(`.job[data-job-id="${jobId}"]`);
  if (!row) {
    row = document.createElement("li");
    row.className = "job";
    row.dataset.jobId = jobId;
    row.dataset.kind = kind || "";
    row.innerHTML = `<header><b></b><span class="muted"></span>
      <button class="link cancel" type="button">Cancel</button></header><div class="bar"><div></div></div>`;
    row.querySelector("b").textContent = kind || "Job";
    row.querySelector(".cancel").addEventListener("click", (event) => cancel(event.target, jobId));
    document.getElementById("jobs").prepend(row);
  }
  return row;
}

// A job's own job_progress: an import also says how many of its orders are done.
function showProgress({ jobId, kind, percent, status, done, total }) {
  const row = jobRow(jobId, kind);
  if (FINISHED.has(row.dataset.status)) return; // a late update never reopens a finished job
  row.querySelector("b").textContent = kind;
  Object.assign(row.dataset, { kind, status });
  const count = total === undefined ? "" : ` · ${done}/${total}`;
  if (total !== undefined) Object.assign(row.dataset, { done, total });
  row.querySelector(".muted").textContent = `${status} · ${percent}%${count}`;
  row.querySelector(".bar div").style.width = `${percent}%`;
  row.querySelector(".cancel").hidden = FINISHED.has(status);
}

// The job ends as its own events say: cancelled, or as it would have past its point of no return.
async function cancel(button, jobId) {
  button.disabled = true;
  try {
    await api(config, user, "POST", `/jobs/${jobId}/cancel`);
  } catch (error) {
    showToast({ title: "Cancel refused", description: String(error.message), variant: "error" });
    button.disabled = false;
  }
}

function showMetrics(metrics) {
  const box = document.getElementById("figures");
  box.replaceChildren();
  for (const [name, label] of [["today", "Today"], ["7d", "7 days"], ["30d", "30 days"]]) {
    const w = metrics[name];
    const revenue = Object.entries(w.revenue).map(([c, v]) => money(v, c)).join(" + ") || money(0);
    const aov = Object.entries(w.average_order_value).map(([c, v]) => money(v, c)).join(" + ") || "—";
    const rate = w.payment_success_rate === null ? "—" : `${Math.round(w.payment_success_rate * 100)}%`;
    const card = document.createElement("div");
    card.className = "figure";
    card.dataset.window = name;
    card.innerHTML = `<h3></h3><dl><dt>Orders</dt><dd data-k="orders"></dd><dt>Revenue</dt><dd data-k="revenue"></dd>
      <dt>Avg order</dt><dd data-k="aov"></dd><dt>Paid rate</dt><dd data-k="rate"></dd></dl>`;
    card.querySelector("h3").textContent = label;
    card.querySelector('[data-k="orders"]').textContent = w.orders;
    card.querySelector('[data-k="revenue"]').textContent = revenue;
    card.querySelector('[data-k="aov"]').textContent = aov;
    card.querySelector('[data-k="rate"]').textContent = rate;
    box.append(card);
  }
  drawChart(metrics);
}

// Revenue per window as bars: meaningful from the very first update.
function drawChart(metrics) {
  const windows = [["today", "Today"], ["7d", "7 days"], ["30d", "30 days"]];
  const totals = windows.map(([name]) =>
    Object.values(metrics[name].revenue).reduce((a, b) => a + b, 0),
  );
  const max = Math.max(1, ...totals);
  const svg = document.getElementById("chart");
  svg.innerHTML = windows
    .map(([, label], i) => {
      const width = (totals[i] / max) * 200;
      const y = 6 + i * 28;
      return `<text x="0" y="${y + 14}" font-size="11" fill="#6b7186">${label}</text>
        <rect x="60" y="${y}" width="${Math.max(width, 1).toFixed(1)}" height="18" rx="4" fill="#4f46e5"/>
        <text x="${(66 + width).toFixed(1)}" y="${y + 14}" font-size="11" fill="#1c2033">${money(totals[i])}</text>`;
    })
    .join("");
}

window.addEventListener("ui-update", (event) => {
  const data = event.detail;
  if (data && data.type === "job_progress") showProgress(data);
  if (data && data.type === "metrics_update" && data.businessId === user.business) showMetrics(data.metrics);
});

window.addEventListener("ui-modal", (event) => {
  const { type, payload } = event.detail;
  if (type !== "payment_failed") return;
  document.getElementById("modal-body").textContent =
    `Order #${payload.orderId} was not paid: ${payload.reason}`;
  document.getElementById("modal").hidden = false;
});
// The demo's own event (demo/events.py), which insight.js dispatches as "ui-confetti".
window.addEventListener("ui-confetti", (event) => {
  const { by, message } = event.detail;
  const banner = document.getElementById("celebration");
  banner.textContent = `🎉 ${by}: ${message}`;
  banner.dataset.by = by;
  banner.hidden = false;
  clearTimeout(banner.timer);
  banner.timer = setTimeout(() => { banner.hidden = true; }, 6000);
});

async function celebrate(button) {
  button.disabled = true;
  try {
    const response = await fetch("/demo/celebrate", {
      method: "POST",
      headers: { Authorization: `Bearer ${await getToken(user)}`, "Content-Type": "application/json" },
      body: JSON.stringify({ message: "Celebrating with the whole team!" }),
    });
    if (!response.ok) throw new Error((await response.json()).detail || response.statusText);
  } catch (error) {
    showToast({ title: "Could not celebrate", description: String(error.message), variant: "error" });
  } finally {
    button.disabled = false;
  }
}
document.getElementById("celebrate").addEventListener("click", (event) => celebrate(event.target));

document.getElementById("modal-close").addEventListener("click", () => {
  document.getElementById("modal").hidden = true;
});

async function submit(button, kind, run) {
  button.disabled = true;
  try {
    const job = await run();
    const row = jobRow(job.job_id, kind);
    row.dataset.status ||= "queued";
  } catch (error) {
    showToast({ title: "Request refused", description: String(error.message), variant: "error" });
  } finally {
    button.disabled = false;
  }
}

async function pay(button, paymentMethod) {
  await submit(button, "payment", () =>
    api(config, user, "POST", "/payments", { order_id: lastOrderId, payment_method: paymentMethod }),
  );
}

document.getElementById("create-order").addEventListener("click", (event) =>
  submit(event.target, "order", () => api(config, user, "POST", "/orders", ORDER)),
);
// One job for many orders: one progress bar (done/total) and one toast when it ends.
document.getElementById("import-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const count = Number(document.getElementById("import-count").value);
  const orders = Array.from({ length: count }, () => ORDER);
  submit(document.getElementById("import-orders"), "import", () =>
    api(config, user, "POST", "/orders/import", { orders }),
  );
});
document.getElementById("pay-visa").addEventListener("click", (e) => pay(e.target, "pm_card_visa"));
document.getElementById("pay-declined").addEventListener("click", (e) => pay(e.target, "pm_card_chargeDeclined"));
document.getElementById("recalculate").addEventListener("click", (event) =>
  submit(event.target, "metrics", () => api(config, user, "POST", "/metrics/recalculate", {})),
);

// An order's toast means it exists: it becomes the one the payment buttons pay.
connect(user, {
  onToast: (frame) => {
    window.insightDemo.frames.push(frame);
    showToast(frame);
    const match = /Order #(\d+) created/.exec(frame.description);
    if (match) {
      lastOrderId = match[1];
      document.getElementById("pay-visa").disabled = false;
      document.getElementById("pay-declined").disabled = false;
    }
  },
});
renderUsers();
