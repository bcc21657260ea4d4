/**
 * The dashboard's stylesheet and script, inline in every page under the response's CSP nonce:
 * no file to serve, no build step, no network.
 *
 * @module
 */

/** The stylesheet: system fonts, a light and a dark scheme, one colour per status. */
export const STYLE: string = `
:root{color-scheme:light dark;--bg:#f7f7f8;--fg:#1c1d21;--muted:#6b6f7b;--card:#fff;--line:#e3e4e8;
--accent:#3b5bdb;--pending:#868e96;--running:#1c7ed6;--sleeping:#7950f2;--waiting:#f08c00;--completed:#2f9e44;
--failed:#e03131;--cancelled:#495057;--retrying:#f08c00;--skipped:#adb5bd;--parked:#c2255c}
@media (prefers-color-scheme:dark){:root{--bg:#141517;--fg:#e9ecef;--muted:#909296;--card:#1f2023;--line:#2c2e33}}
*{box-sizing:border-box}body{margin:0;font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;background:var(--bg);color:var(--fg)}
header{display:flex;align-items:center;gap:24px;padding:10px 24px;background:var(--card);border-bottom:1px solid var(--line)}
header b{font-size:15px}header nav a{margin-right:16px;color:var(--muted);text-decoration:none}header nav a.on{color:var(--fg);font-weight:600}
main{max-width:1180px;margin:0 auto;padding:20px 24px}h1{font-size:18px;margin:0 0 14px;display:flex;gap:10px;align-items:center}
h2{font-size:14px;margin:22px 0 8px;color:var(--muted);text-transform:uppercase;letter-spacing:.04em}
a{color:var(--accent)}.mono,code,pre{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:12.5px}
.card{background:var(--card);border:1px solid var(--line);border-radius:8px;overflow:hidden}
table{width:100%;border-collapse:collapse}th,td{text-align:left;padding:7px 12px;border-bottom:1px solid var(--line);vertical-align:middle}
td.mono a{text-decoration:none}span.err{color:var(--failed)}
th{font-size:12px;color:var(--muted);font-weight:500;background:var(--bg)}tr:last-child td{border-bottom:0}
td.err{color:var(--failed);max-width:360px;overflow:hidden;text-overflow:ellipsis;white-space:nowrap}
.badge{display:inline-block;padding:1px 8px;border-radius:10px;font-size:12px;font-weight:600;color:#fff;background:var(--pending)}
.s-running{background:var(--running)}.s-sleeping{background:var(--sleeping)}.s-waiting,.s-retrying{background:var(--waiting)}
.s-completed{background:var(--completed)}.s-failed{background:var(--failed)}.s-cancelled{background:var(--cancelled)}.s-skipped{background:var(--skipped)}.s-parked{background:var(--parked)}
.tabs{display:flex;flex-wrap:wrap;gap:6px;margin-bottom:12px}.tabs a{padding:4px 10px;border:1px solid var(--line);border-radius:14px;
text-decoration:none;color:var(--fg);background:var(--card);font-size:13px}.tabs a.on{border-color:var(--accent);color:var(--accent)}
.tabs a span{color:var(--muted);margin-left:4px}
form.filters{display:flex;gap:8px;margin-bottom:12px}input,select,button{font:inherit;padding:5px 9px;border:1px solid var(--line);
border-radius:6px;background:var(--card);color:var(--fg)}button{cursor:pointer}button.primary{background:var(--accent);border-color:var(--accent);color:#fff}
button.danger{color:var(--failed);border-color:var(--failed)}
.pager{display:flex;justify-content:space-between;margin-top:12px;color:var(--muted)}
dl{display:grid;grid-template-columns:120px 1fr;gap:6px 12px;margin:0;padding:14px}dt{color:var(--muted)}dd{margin:0}
pre{margin:0;padding:12px;white-space:pre-wrap;word-break:break-word;max-height:320px;overflow:auto}
.error{border:1px solid var(--failed);border-left-width:4px;border-radius:6px;padding:10px 12px;margin:12px 0;background:var(--card)}
.error b{color:var(--failed)}.notice{padding:8px 12px;border-radius:6px;background:var(--card);border:1px solid var(--line);margin-bottom:12px}
.actions{display:flex;gap:8px;margin-left:auto;font-size:14px;font-weight:400}.actions form{margin:0}.muted{color:var(--muted)}
svg.bar{display:block}svg.bar rect{fill:var(--accent);opacity:.55}.grid2{display:grid;grid-template-columns:1fr 1fr;gap:16px}
@media (max-width:800px){.grid2{grid-template-columns:1fr}}
`;

/**
 * The script: relative times kept fresh, and live refresh of the element marked `data-live="on"` by
 * fetching the same URL (the server answers with the page's body only) and swapping that element in
 * place, every 3 s while the tab is visible. The markup comes from the server, escaped there, and
 * is parsed in an inert template. The new element says whether to go on (`"off"` once a run finished).
 */
export const SCRIPT: string = `
const units=[["d",864e5],["h",36e5],["m",6e4],["s",1e3]];
function ago(t){const d=Date.now()-t;const a=Math.abs(d);if(a<1e3)return"just now";let s="";
for(const[u,n]of units){if(a>=n){s=Math.floor(a/n)+u;break}}return d>0?s+" ago":"in "+s}
function times(){for(const e of document.querySelectorAll("time[data-t]"))e.textContent=ago(Number(e.dataset.t))}
async function refresh(){const live=document.querySelector('[data-live="on"]');if(!live||document.hidden)return;
try{const r=await fetch(location.href,{headers:{"x-reflow-live":"1"}});if(!r.ok)return;
const t=document.createElement("template");t.innerHTML=await r.text();const next=t.content.querySelector("[data-live]");
if(next){live.replaceWith(next);times()}}catch{}}
times();setInterval(times,1e3);setInterval(refresh,3e3);
`;
