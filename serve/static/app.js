// The demo page: asks /recommend, shows the answer, sends a click to /events and shows the
// next answer. Plain DOM, no build step, and no request leaves this server.
"use strict";

const $ = (id) => document.getElementById(id);
let shown = [];  // item ids of the list on screen

function newUserId() {
  return "new-" + Math.random().toString(36).slice(2, 10);
}

async function post(path, body) {
  const r = await fetch(path, {method: "POST", headers: {"content-type": "application/json"},
                               body: JSON.stringify(body)});
  const data = await r.json();
  if (!r.ok) throw new Error(data.detail ? JSON.stringify(data.detail) : r.statusText);
  return data;
}

function request() {
  const body = {user_id: $("user").value.trim() || null, device: $("device").value, k: 12,
                diversity: Number($("diversity").value)};
  if ($("time").value) body.timestamp = $("time").value + ":00";
  return body;
}

function render(answer, clicked) {
  const before = new Set(shown);
  const list = $("items");
  list.replaceChildren();
  for (const item of answer.items) {
    const li = document.createElement("li");
    li.dataset.itemId = item.item_id;
    if (clicked && !before.has(item.item_id)) li.classList.add("new");
    const name = document.createElement("div");
    name.className = "name";
    name.textContent = item.name || item.item_id;
    const meta = document.createElement("div");
    meta.className = "meta";
    meta.textContent = `${item.category} · ${item.item_id} · score ${item.score.toFixed(3)} `;
    for (const s of item.source.split("+")) {
      const tag = document.createElement("span");
      tag.className = "source";
      tag.textContent = s;
      meta.appendChild(tag);
    }
    li.append(name, meta);
    li.addEventListener("click", () => click(item));
    list.appendChild(li);
  }
  shown = answer.items.map((i) => i.item_id);
  $("version").textContent = answer.model_version;
  const who = answer.known_user ? "a known user" : "a user the model has not trained on";
  const notes = answer.degraded.length ? ` (answered without: ${answer.degraded.join(", ")})`
                                       : "";
  $("status").textContent = (clicked ? `Clicked "${clicked.name || clicked.item_id}": ` +
      `${shown.includes(clicked.item_id) ? "still listed" : "it is gone"}. ` : "") +
      `${answer.items.length} items for ${answer.user_id || "an anonymous visitor"}, ${who}` +
      notes + ".";
}

async function recommend(clicked) {
  try {
    render(await post("/recommend", request()), clicked);
  } catch (e) {
    $("status").textContent = "Could not recommend: " + e.message;
  }
}

async function click(item) {
  const body = request();
  if (!body.user_id) {  // events need a user: an anonymous visitor becomes a new one
    $("user").value = newUserId();
    body.user_id = $("user").value;
  }
  try {
    await post("/events", {user_id: body.user_id, item_id: item.item_id, event: "click",
                           device: body.device});
  } catch (e) {
    $("status").textContent = "Could not send the click: " + e.message;
    return;
  }
  await recommend(item);
}

async function start() {
  $("diversity").addEventListener("input", () => {
    $("diversity-value").textContent = $("diversity").value;
  });
  $("cold").addEventListener("change", () => {
    $("user").disabled = $("cold").checked;
    $("user").value = $("cold").checked ? newUserId() : ($("users").firstChild?.value || "");
    recommend();
  });
  $("ask").addEventListener("submit", (e) => { e.preventDefault(); recommend(); });
  const health = await (await fetch("/healthz")).json();
  $("version").textContent = health.model_version;
  for (const u of health.example_users || []) {
    const o = document.createElement("option");
    o.value = u;
    $("users").appendChild(o);
  }
  if (health.example_users && health.example_users.length) $("user").value =
    health.example_users[0];
  document.body.dataset.ready = "1";
}

start();
