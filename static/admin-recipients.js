/**
 * admin-recipients.js — the admin console's recipients panel: who has not confirmed (or, for an
 * announcement that does not ask for confirmation, not read) one announcement yet, page by page
 * from `GET /api/announcements/{id}/recipients?state=pending`, refreshed with the list, and the
 * whole list (every page) as a CSV download. User ids are shown with textContent only.
 */

const PAGE = 100;
/** Rows per request when downloading the whole list. */
const CSV_PAGE = 1000;

let api = null;
let h = null;
let shown = null; // {id, title, requires} of the announcement in the panel
let loaded = []; // recipients shown so far
let nextAfter = null;

const $ = (selector) => document.querySelector(selector);

/** Hands the module the console's `api(method, path)` and element builder. */
export function initRecipients(apiFn, builder) {
  api = apiFn;
  h = builder;
  $('#recipients-more').addEventListener('click', () => loadPage(true));
  $('#recipients-csv').addEventListener('click', downloadCsv);
  $('#recipients-close').addEventListener('click', () => {
    shown = null;
    $('#recipients').hidden = true;
  });
}

/** Opens the panel on an announcement (an item of the admin list). */
export function showRecipients(item) {
  shown = { id: item.id, title: item.title ?? '', requires: Boolean(item.requires_confirmation) };
  $('#recipients').hidden = false;
  $('#recipients').dataset.id = String(item.id);
  $('#recipients-title').textContent = shown.title;
  $('#recipients-what').textContent = shown.requires ? 'not confirmed yet' : 'not read yet';
  loaded = [];
  nextAfter = null;
  loadPage(false);
}

/** Reloads what the panel shows (as many rows as it holds, at least one page). */
export function refreshRecipients() {
  if (shown) loadPage(false, Math.max(PAGE, loaded.length));
}

function query(state, limit, after) {
  const q = new URLSearchParams({ state, limit: String(limit) });
  if (after != null) q.set('after', after);
  return `/api/announcements/${encodeURIComponent(shown.id)}/recipients?${q}`;
}

async function loadPage(more, limit = PAGE) {
  const target = shown;
  try {
    const page = await api('GET', query('pending', Math.min(limit, 1000), more ? nextAfter : null));
    if (target !== shown) return;
    loaded = more ? loaded.concat(page.items ?? []) : page.items ?? [];
    nextAfter = page.next_after ?? null;
    render();
  } catch (err) {
    if (target === shown) $('#recipients-status').textContent = `could not load: ${err.message}`;
  }
}

function render() {
  const list = $('#recipients-list');
  list.replaceChildren(...loaded.map((r) => h('li', { data: { userId: r.user_id } }, r.user_id,
    r.read_at && shown.requires ? h('span', { class: 'muted small' }, ' read, not confirmed') : null)));
  const count = `${loaded.length}${nextAfter != null ? '+' : ''}`;
  $('#recipients-status').textContent = `${count} pending · updated ${new Date().toLocaleTimeString()}`;
  $('#recipients-empty').hidden = loaded.length > 0;
  $('#recipients-more').hidden = nextAfter == null;
}

const csvField = (value) => {
  const text = String(value ?? '');
  // Quote always, double inner quotes; a leading =,+,-,@ is defused for spreadsheets.
  const safe = /^[=+\-@\t\r]/.test(text) ? `'${text}` : text;
  return `"${safe.replace(/"/g, '""')}"`;
};

/** Every page of the pending list, as CSV. */
async function downloadCsv() {
  const target = shown;
  if (!target) return;
  const button = $('#recipients-csv');
  button.disabled = true;
  const lines = ['user_id,delivered_at,read_at,confirmed_at'];
  try {
    let after = null;
    do {
      const page = await api('GET', query('pending', CSV_PAGE, after));
      for (const r of page.items ?? []) {
        lines.push([r.user_id, r.delivered_at, r.read_at, r.confirmed_at].map(csvField).join(','));
      }
      after = page.next_after ?? null;
    } while (after != null && target === shown);
    if (target !== shown) return;
    const blob = new Blob([lines.join('\r\n') + '\r\n'], { type: 'text/csv' });
    const link = h('a', { href: URL.createObjectURL(blob), download: `announcement-${target.id}-pending.csv` });
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(link.href), 10000);
    $('#recipients-status').textContent = `downloaded ${lines.length - 1} pending`;
  } catch (err) {
    $('#recipients-status').textContent = `download failed: ${err.message}`;
  } finally {
    button.disabled = false;
  }
}
