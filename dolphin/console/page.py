"""The console's one page: static HTML, CSS and script (no CDN: it works offline). The script opens ``/events``
(server-sent events) and redraws every section from each snapshot; text goes in through ``textContent`` (stored
values are never interpreted as HTML); only the server-drawn SVG charts go in as markup."""

PAGE = r"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>DOLPHIN console</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
:root{--bg:#0f1419;--card:#182029;--fg:#e6edf3;--dim:#8b98a5;--line:#2a3541;--ok:#3fb950;--warn:#d29922;--bad:#f85149;--acc:#58a6ff}
*{box-sizing:border-box}body{margin:0;background:var(--bg);color:var(--fg);font:14px/1.4 system-ui,-apple-system,Segoe UI,Roboto,sans-serif}
header{display:flex;gap:16px;align-items:center;padding:10px 18px;border-bottom:1px solid var(--line);flex-wrap:wrap}
header h1{font-size:18px;margin:0 12px 0 0}.badge{padding:2px 9px;border-radius:10px;font-size:12px;font-weight:600;background:var(--line)}
.ok{color:var(--ok)}.warn{color:var(--warn)}.bad{color:var(--bad)}.dim{color:var(--dim)}
.b-ok{background:#1f3d2a;color:var(--ok)}.b-warn{background:#3d321a;color:var(--warn)}.b-bad{background:#4a1e1e;color:var(--bad)}
a{color:var(--acc)}#banner{display:none;margin:10px 18px;padding:10px 14px;border-radius:6px;background:#4a1e1e;color:#ffd7d5;font-weight:600}
main{display:grid;grid-template-columns:repeat(auto-fit,minmax(520px,1fr));gap:14px;padding:14px 18px}
section{background:var(--card);border:1px solid var(--line);border-radius:8px;padding:12px 14px;min-width:0}
section h2{font-size:13px;text-transform:uppercase;letter-spacing:.06em;color:var(--dim);margin:0 0 8px}
.wide{grid-column:1/-1}.big{font-size:34px;font-weight:700;letter-spacing:.02em}
.APEX{color:var(--ok)}.STALKER{color:var(--acc)}.TURTLE{color:var(--warn)}.HIBERNATE{color:var(--bad)}
table{border-collapse:collapse;width:100%;font-variant-numeric:tabular-nums}th,td{text-align:left;padding:3px 8px 3px 0;border-bottom:1px solid var(--line);vertical-align:top}
th{color:var(--dim);font-weight:500;font-size:12px}td.n{text-align:right}th.n{text-align:right}
.kv{display:grid;grid-template-columns:max-content 1fr;gap:2px 14px}.kv div:nth-child(odd){color:var(--dim)}
svg{width:100%;height:auto;display:block}svg .title{fill:var(--fg);font-size:14px;font-weight:600}svg .tick{fill:var(--dim);font-size:12px}
svg .frame{fill:none;stroke:var(--line)}svg .grid{stroke:var(--line);stroke-width:.5}svg .line{fill:none;stroke:var(--acc);stroke-width:2}
svg .ref{stroke:var(--dim);stroke-dasharray:4 4}svg .last{fill:var(--acc)}
.bar{height:8px;background:var(--line);border-radius:4px;overflow:hidden;min-width:80px}.bar i{display:block;height:100%;background:var(--acc)}
form{display:flex;gap:8px;flex-wrap:wrap;align-items:center;margin-top:8px}input,select,button{background:var(--bg);color:var(--fg);border:1px solid var(--line);border-radius:4px;padding:4px 8px}
button{cursor:pointer}#act-result{margin-top:6px}
</style></head><body>
<header><h1>DOLPHIN console</h1>
<span id="conn" class="badge">connecting</span><span id="store-status" class="badge">store ?</span>
<span id="health-badge" class="badge">watchdog ?</span><span id="mode" class="badge">read-only</span>
<span class="dim">as of <span id="asof">-</span></span><span class="dim">update <span id="collect">-</span></span>
<a id="dagster-link" href="#" target="_blank" rel="noopener">Dagster UI</a></header>
<div id="banner"></div>
<main>
<section><h2>Posture (survival stack)</h2>
<div style="display:flex;gap:24px;align-items:baseline"><div id="posture" class="big">-</div>
<div>Rm <b id="rm">-</b></div><div class="dim" id="safety-age"></div></div>
<table id="cats"><thead><tr><th>category</th><th class="n">value</th><th></th><th>inputs / reason</th></tr></thead><tbody></tbody></table>
<div style="margin-top:8px" id="hysteresis" class="dim"></div>
<div style="margin-top:6px" id="override"></div>
<form id="override-form" style="display:none" onsubmit="return false">
<select id="ov-posture"><option>APEX</option><option>STALKER</option><option>TURTLE</option><option selected>HIBERNATE</option></select>
<input id="ov-ttl" size="5" value="900" title="seconds"><input id="ov-reason" placeholder="reason (audited)" size="22">
<input id="ov-who" placeholder="your name" size="10"><input id="ov-token" type="password" placeholder="operator token" size="14">
<button id="ov-set">Set override</button><button id="ov-clear">Clear</button></form><div id="act-result" class="dim"></div>
</section>
<section><h2>Last posture changes</h2><table id="changes"><thead><tr><th>time</th><th>change</th><th class="n">Rm</th><th>breakdown</th></tr></thead><tbody></tbody></table>
<h2 style="margin-top:12px">Override audit</h2><table id="ov-audit"><tbody></tbody></table></section>
<section class="wide"><h2>Strategies</h2><div id="strategies"></div></section>
<section class="wide"><h2>Equity</h2><div id="equity"></div></section>
<section><h2>Fills <span id="fills-day" class="dim"></span></h2><table id="fills"><thead><tr><th>time</th><th>symbol</th><th>side</th><th>role</th><th class="n">qty</th><th class="n">price</th><th class="n">fee</th><th class="n">capital after</th></tr></thead><tbody></tbody></table></section>
<section><h2>Closed trades (session)</h2><table id="trades"><thead><tr><th>exit</th><th>symbol</th><th>side</th><th class="n">qty</th><th class="n">entry</th><th class="n">exit</th><th>how</th><th class="n">PnL</th></tr></thead><tbody></tbody></table></section>
<section><h2>Latest scan</h2><div class="kv" id="scan"></div><table id="lambda" style="margin-top:8px"><thead><tr><th>window</th><th class="n">lambda</th><th class="n">lambda / N</th><th>top loadings (leading eigenvector)</th></tr></thead><tbody></tbody></table></section>
<section><h2>Last decisions</h2><table id="decisions"><thead><tr><th>bar close</th><th>action</th><th>why</th><th class="n">vel_div</th><th>posture</th></tr></thead><tbody></tbody></table></section>
<section><h2>Feature freshness</h2><table id="freshness"><thead><tr><th>feature</th><th class="n">age</th><th class="n">limit</th><th></th><th>as of</th></tr></thead><tbody></tbody></table>
<div class="kv" id="risk-inputs" style="margin-top:10px"></div></section>
<section><h2>Watchdog</h2><div id="watchdog"></div><table id="checks"><tbody></tbody></table></section>
</main>
<script>
"use strict";
const $=id=>document.getElementById(id);
function el(tag,text,cls){const e=document.createElement(tag);if(text!==undefined&&text!==null)e.textContent=String(text);if(cls)e.className=cls;return e}
function row(tb,cells){const tr=document.createElement("tr");for(const c of cells){const td=el("td");if(c instanceof Node)td.appendChild(c);else if(Array.isArray(c)){td.textContent=c[0]??"";if(c[1])td.className=c[1]}else td.textContent=c??"";tr.appendChild(td)}tb.appendChild(tr);return tr}
function body(id){const t=$(id);const tb=t.tBodies[0]||t.appendChild(document.createElement("tbody"));tb.textContent="";return tb}
function num(x,d=2){return (x===null||x===undefined||Number.isNaN(x))?"-":Number(x).toLocaleString("en-US",{minimumFractionDigits:d,maximumFractionDigits:d})}
function sig(x,d=6){return (x===null||x===undefined)?"-":Number(x).toPrecision(d)}
function age(s){if(s===null||s===undefined)return "-";const a=Math.abs(s);let o;if(a<60)o=a.toFixed(a<10?1:0)+" s";else if(a<3600)o=Math.floor(a/60)+"m "+String(Math.floor(a%60)).padStart(2,"0")+"s";else if(a<86400)o=Math.floor(a/3600)+"h "+String(Math.floor(a%3600/60)).padStart(2,"0")+"m";else o=Math.floor(a/86400)+"d "+Math.floor(a%86400/3600)+"h";return (s<-1?"in the future ":"")+o}
function t(ms){return ms?new Date(ms).toISOString().replace("T"," ").slice(0,19):"-"}
function badge(id,text,cls){const b=$(id);b.textContent=text;b.className="badge "+cls}
let last=null;
function render(s){
 last=s;window.__snapshot=s;window.__renders=(window.__renders||0)+1;
 $("asof").textContent=s.now||"-";$("collect").textContent=s.collect_ms!==undefined?num(s.collect_ms,0)+" ms":"-";
 $("dagster-link").href=s.dagster_url||"#";
 badge("mode",s.actions_enabled?"override actions enabled":"read-only",s.actions_enabled?"b-warn":"");
 const st=s.store||{};const banner=[];
 if(st.reachable===true)badge("store-status","store OK","b-ok");
 else if(st.reachable===false){badge("store-status","store UNREACHABLE","b-bad");banner.push("FEATURE STORE UNREACHABLE: "+(st.error||"")+" — posture, scan, freshness and health below are unknown; ledger values are still read.")}
 if(s.stalled_s>=3)banner.push("Snapshot not answering for "+age(s.stalled_s)+" (a store or ledger call is hanging): values shown are from "+(s.now||"?")+".");
 if(s.ledger&&s.ledger.error)banner.push("LEDGER UNREADABLE: "+s.ledger.error);
 for(const e of (s.errors||[]))banner.push(e);
 $("banner").style.display=banner.length?"block":"none";$("banner").textContent=banner.join("  ·  ");
 // posture
 const sf=s.safety;const unknown=st.reachable===false?"unknown (store unreachable)":"not published";
 $("posture").textContent=sf?sf.posture:(st.reachable===false?"UNKNOWN":"-");$("posture").className="big "+(sf?sf.posture:"");
 $("rm").textContent=sf?num(sf.Rm,3):"-";$("safety-age").textContent=sf?("published "+age(sf.age_s)+" ago"+(sf.changed?" (changed: was "+sf.previous+")":"")):unknown;
 const cb=body("cats");
 if(sf){for(const k of ["Cat1","Cat2","Cat3","Cat4","Cat5"]){const v=(sf.breakdown||{})[k];const bar=el("div",null,"bar");const i=el("i");i.style.width=Math.max(0,Math.min(1,v||0))*100+"%";bar.appendChild(i);const r=row(cb,[k,[num(v,3),"n"],bar,(sf.reasons||{})[k]||""]);r.id="cat-"+k}}
 else row(cb,[unknown,"","",""]);
 const hy=s.hysteresis;
 $("hysteresis").textContent=st.reachable===false?"hysteresis: unknown (store unreachable)":hy?("hysteresis: "+(hy.pending_direction?("step "+hy.pending_direction+" to "+hy.pending_target+" pending, "+hy.pending_count+" of "+(hy.pending_direction==="down"?hy.checks_down:hy.checks_up)+" checks"):"no step pending")+" (down needs "+hy.checks_down+" checks, up "+hy.checks_up+")"):"hysteresis: no runtime decision record yet";
 const ov=s.override||{};$("override").textContent=ov.available===false?"manual override: not available in this build":ov.error?("override table unreadable: "+ov.error):ov.active?("MANUAL OVERRIDE IN FORCE: "+ov.active.text):"manual override: none in force";
 $("override").className=ov.active?"warn":"dim";$("override-form").style.display=s.actions_enabled?"flex":"none";
 const ab=body("ov-audit");for(const o of (ov.audit||[]).slice(0,6))row(ab,["#"+o.seq+" "+o.kind,o.text]);
 const ch=body("changes");for(const c of (s.posture_changes||[]))row(ch,[t(Date.parse(c.timestamp)),[c.previous+" → "+c.posture,c.posture],[num(c.Rm,3),"n"],Object.entries(c.breakdown||{}).map(([k,v])=>k+" "+num(v,2)).join("  ")]);
 if(!(s.posture_changes||[]).length)row(ch,[st.reachable===false?"unknown (store unreachable)":"none in this runtime session","","",""]);
 // strategies
 const sd=$("strategies");sd.textContent="";const eq=$("equity");eq.textContent="";const fb=body("fills");const tb=body("trades");
 for(const g of (s.strategies||[])){
  const box=el("div");box.id="strategy-"+g.name;const se=g.session;const ch=g.chain_last;
  const kv=el("div",null,"kv");
  const add=(k,v,id)=>{kv.appendChild(el("div",k));const d=el("div",v);if(id)d.id=id;kv.appendChild(d)};
  add("strategy",g.name);
  if(se){add("runtime session",se.session+" ("+se.mode+", "+se.status+", run "+se.runs+")");add("capital (journal)",num(se.capital)+" USDT","capital-"+g.name);add("session peak / drawdown",num(se.peak)+" / "+num(100*se.drawdown,2)+" %","drawdown-"+g.name);add("events / fills",se.events+" / "+se.n_fills)}
  else add("runtime session","none in the ledger");
  if(ch)add("Dagster chain",ch.day+": capital "+num(ch.capital)+", peak "+num(ch.peak)+", drawdown "+num(100*ch.drawdown,2)+" %, day PnL "+num(ch.pnl));else add("Dagster chain","no paper day in the ledger");
  box.appendChild(kv);
  const pt=el("table");pt.id="positions-"+g.name;const th=pt.createTHead().insertRow();for(const h of ["position","qty","entry","leverage","last close","unrealised","held","to TP","to stop","to liquidation","max-hold exit"])th.appendChild(el("th",h));
  const pb=pt.createTBody();
  for(const p of g.positions){row(pb,[[p.side+" "+p.symbol,p.side==="SHORT"?"warn":"ok"],sig(p.qty),sig(p.entry_price),p.leverage?num(p.leverage,2)+"x":"-",p.last_close?sig(p.last_close):"-",[p.unrealised===undefined?"-":num(p.unrealised)+" USDT",p.unrealised>=0?"ok":"bad"],age(p.held_s),p.to_tp_pct!==undefined?num(p.to_tp_pct,2)+" % ("+sig(p.tp_price)+")":"-",p.to_stop_pct!==undefined?num(p.to_stop_pct,2)+" % ("+sig(p.stop_price)+")":"none (no stop order)",p.to_liq_pct!==undefined?num(p.to_liq_pct,2)+" % ("+sig(p.liquidation_price)+")":"-",p.max_hold_exit_ms?t(p.max_hold_exit_ms):"-"])}
  if(!g.positions.length)row(pb,["flat"+(g.pending?" (entry order in flight: "+g.pending.side+" "+g.pending.symbol+")":""),"","","","","","","","","",""]);
  box.appendChild(pt);
  const sr=Object.entries(g.store_runtime||{});if(sr.length){const p=el("div","store hot copy: "+sr.map(([k,v])=>k+" capital "+num(v.capital)+" ("+v.events+" events, "+age(v.age_s)+" old)").join("; "),"dim");box.appendChild(p)}
  sd.appendChild(box);
  for(const k of ["session_svg","chain_svg"]){const d=el("div");d.id=k+"-"+g.name;d.innerHTML=g[k]||"";eq.appendChild(d)}
  if(se){$("fills-day").textContent=se.fills_day;for(const f of se.fills_today)row(fb,[f.time,f.symbol,[f.side,f.side==="SELL"?"warn":"ok"],f.role,[sig(f.qty),"n"],[sig(f.price),"n"],[num(f.fee,4),"n"],[num(f.capital_after),"n"]]);
   for(const x of se.trades.slice().reverse())row(tb,[x.exit,x.symbol,x.side,[sig(x.qty),"n"],[sig(x.entry_price),"n"],[sig(x.exit_price),"n"],x.role,[num(x.pnl),x.pnl>=0?"n ok":"n bad"]])}
 }
 if(!fb.rows.length)row(fb,["no fills","","","","","","",""]);if(!tb.rows.length)row(tb,["no closed trade","","","","","","",""]);
 // scan
 const sc=s.scan;const skv=$("scan");skv.textContent="";
 const kvs=(k,v,id)=>{skv.appendChild(el("div",k));const d=el("div",v);if(id)d.id=id;skv.appendChild(d)};
 if(sc){kvs("vel_div",sig(sc.vel_div,5)+"  (/N "+sig(sc.vel_div_norm,4)+")","vel-div");kvs("as of",sc.timestamp+" ("+age(sc.age_s)+" old)");kvs("assets",sc.asset_count)}else kvs("scan",unknown);
 const lb=body("lambda");const L=s.loadings||{};
 if(sc){for(const w of Object.keys(sc.lambda).sort((a,b)=>a-b)){const tl=((L.windows||{})[w]||[]).map(([a,v])=>a+" "+sig(v,3)).join(", ");row(lb,["w"+w,[sig(sc.lambda[w],5),"n"],[sig(sc.lambda_norm[w],4),"n"],tl||(L.error?"scan file unreadable: "+L.error:"-")])}}
 // decisions
 const db=body("decisions");const dd=(s.strategies||[]).flatMap(g=>g.decisions||[]);
 for(const d of dd.slice(0,12))row(db,[t(d.close_ms),[d.action,d.action.startsWith("enter")?"ok":d.action.startsWith("exit")?"warn":""],d.reason+(d.asset?" ["+d.asset+"]":""),[sig(d.vel_div,4),"n"],d.posture]);
 if(!dd.length)row(db,[st.reachable===false?"unknown (store unreachable)":"no runtime decision record yet (the runtime writes one per bar close)","","","",""]);
 // freshness
 const frb=body("freshness");for(const f of (s.freshness||[])){row(frb,[f.name,[age(f.age_s),"n"],[age(f.limit_s),"n"],[f.age_s===null?"MISSING":f.ok?"OK":"STALE",f.ok?"ok":"bad"],f.timestamp||"-"]).id="fresh-"+f.name}
 if(!(s.freshness||[]).length)row(frb,[unknown,"","","",""]);
 const ri=$("risk-inputs");ri.textContent="";const kr=(k,v)=>{ri.appendChild(el("div",k));ri.appendChild(el("div",v))};
 if(s.mc)kr("MC forewarner",(s.mc.status||"?")+"  catastrophic_prob "+sig(s.mc.catastrophic_prob,3));
 if(s.acb)kr("ACB","boost "+sig(s.acb.boost,4)+"  beta "+sig(s.acb.beta,4));
 if(s.vol)kr("vol regime",s.vol.regime_ok?"OK (entries allowed)":"LOW (entries gated)");
 if(s.exf)kr("ExF",s.exf.dvol_btc!==undefined?"dvol_btc "+sig(s.exf.dvol_btc,4):"published");
 // watchdog
 const h=s.health;const ck=body("checks");
 if(h){badge("health-badge","watchdog "+h.status,h.status==="GREEN"?"b-ok":"b-bad");$("watchdog").textContent=h.status+" ("+age(h.age_s)+" old)"+((h.failing||[]).length?": failing "+h.failing.join(", "):"");
  for(const c of (h.checks||[]))row(ck,[c.name,[c.ok?"ok":"FAIL",c.ok?"ok":"bad"],c.detail])}
 else{badge("health-badge","watchdog "+(st.reachable===false?"unknown":"not published"),"b-warn");$("watchdog").textContent=st.reachable===false?"unknown (store unreachable)":"not published (the watchdog sensor has not run)"}
}
function connect(){
 const es=new EventSource("events");
 es.onopen=()=>badge("conn","live","b-ok");
 es.onmessage=e=>{try{render(JSON.parse(e.data))}catch(err){console.error(err);badge("conn","render error: "+err,"b-bad")}};
 es.onerror=()=>badge("conn","reconnecting","b-bad");
}
async function act(path,payload){
 const r=await fetch(path,{method:"POST",headers:{"Content-Type":"application/json","Authorization":"Bearer "+$("ov-token").value},body:JSON.stringify(payload)});
 const j=await r.json().catch(()=>({error:"HTTP "+r.status}));$("act-result").textContent=j.ok?("done: "+j.text):("refused: "+(j.error||r.status));
}
$("ov-set").onclick=()=>act("api/override",{posture:$("ov-posture").value,ttl_s:Number($("ov-ttl").value),reason:$("ov-reason").value,who:$("ov-who").value});
$("ov-clear").onclick=()=>act("api/override/clear",{reason:$("ov-reason").value||"cleared from the console",who:$("ov-who").value});
connect();
</script></body></html>
"""
