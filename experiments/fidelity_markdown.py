"""Markdown body of the fidelity report (after the verdict written by :mod:`recgym.experiments.fidelity`)."""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["sections_markdown"]


def _f(x: Any, nd: int = 3) -> str:
    return "n/a" if x is None or (isinstance(x, float) and not np.isfinite(x)) else f"{x:.{nd}f}"


def _ci(v: list[float]) -> str:
    return f"[{_f(v[0], 2)}, {_f(v[1], 2)}]"


def _policy(pr: dict[str, Any]) -> list[str]:
    if "panel" not in pr:
        return ["## Policy-ranking fidelity", "", pr.get("note", "not computed"), ""]
    lines = ["## Policy-ranking fidelity", "", pr["protocol"] + ".", "",
             "| recommender | real NDCG | real recall | simulated CTR | simulated return |", "|---|---|---|---|---|"]
    lines += [f"| {t['name']} | {_f(t['ndcg'])} | {_f(t['recall'])} | {_f(t['sim_ctr'])} | {_f(t['sim_return'], 2)} |"
              for t in pr["panel"]]
    lines += ["", "| real vs simulated | Spearman rho [95 % CI] | Kendall tau [95 % CI] | top-1 agrees (bootstrap) | pairwise sign accuracy |",
              "|---|---|---|---|---|"]
    for label, a in ((f"{pr['real_metric']} vs {pr['sim_metric']} (headline)", pr),
                     ("recall vs simulated CTR", pr["recall_vs_sim_ctr"]),
                     ("NDCG vs env session return", pr["ndcg_vs_sim_return"])):
        lines.append(f"| {label} | {_f(a['spearman'], 2)} {_ci(a['spearman_ci'])} | {_f(a['kendall'], 2)} "
                     f"{_ci(a['kendall_ci'])} | {'yes' if a['top1_agreement'] else 'no'} ({_f(a['top1_bootstrap'], 2)}) | "
                     f"{_f(a['pairwise_sign_accuracy'], 2)} |")
    for s in pr.get("skipped", []):
        lines.append(f"\nSkipped: {s['name']} ({s['why']}).")
    return lines + ["", "![policy ranking](policy_ranking.png)", ""]


def _replay(rp: dict[str, Any]) -> list[str]:
    if "per_user" not in rp:
        return ["## Replay error", "", rp.get("note", "not computed"), ""]
    pu, sh = rp["per_user"], rp["shuffled_reference"]["per_user"]
    lines = ["## Replay error (held-out logged sessions, logged items as the slate)", "",
             f"{rp['rows']} held-out rows of {rp['users']} warm users; real click rate {_f(rp['real_click_rate'])}.", "",
             "| per user: simulated - real clicks | bias | MAE | spread (sd) | JS over deciles |", "|---|---|---|---|---|",
             f"| fitted world | {_f(pu['bias'], 2)} | {_f(pu['mae'], 2)} | {_f(pu['spread'], 2)} | {_f(rp['js_distance'])} |",
             f"| shuffled-data reference | {_f(sh['bias'], 2)} | {_f(sh['mae'], 2)} | {_f(sh['spread'], 2)} | "
             f"{_f(rp['shuffled_reference']['js_distance'])} |", "",
             "| popularity decile | real clicks | real share | its sampling error (relative) | replayed share | relative error "
             "| shuffled share |", "|---|---|---|---|---|---|---|"]
    d, ds = rp["per_decile"], rp["shuffled_reference"]["per_decile"]
    se = d.get("real_share_rel_se") or [None] * 10
    for k in range(10):
        lines.append(f"| D{k + 1} | {d['real_clicks'][k]:.0f} | {_f(d['real_share'][k])} | {_f(se[k], 2)} | {_f(d['sim_share'][k])} | "
                     f"{_f(d['relative_error'][k], 2)} | {_f(ds['sim_share'][k])} |")
    return lines + ["", "![replay by decile](replay_deciles.png)", ""]


def _ranking(r: dict[str, Any]) -> list[str]:
    lines = [f"## Held-out ranking of the hidden model (AUC, NDCG@{r['k']})", "",
             "| segment | model | AUC | NDCG | users | note |", "|---|---|---|---|---|---|"]
    for seg, res in r["ranking"].items():
        if "note" in res:
            lines.append(f"| {seg} | – | n/a | n/a | 0 | {res['note']} |")
            continue
        for model, m in res.items():
            lines.append(f"| {seg} | {model} | {_f(m['auc'])} | {_f(m['ndcg'])} | {m.get('users', '–')} | {m.get('note', '')} |")
    return lines + [""]


def _calibration(cal: dict[str, Any]) -> list[str]:
    if not cal.get("bins"):
        return ["## Calibration", "", cal.get("note", "not computed"), ""]
    platt = (f"post-hoc Platt scaling (alpha {_f(cal['platt_alpha'])}, gamma {_f(cal['platt_gamma'])}, beta "
             f"{_f(cal['platt_beta'])}) fitted on {cal['calibration_pairs']} validation pairs")
    ex = cal.get("exposure") or {}
    lines = ["## Calibration", "", f"The env's click probabilities, {cal['target']} ({cal['pairs']} pairs): ECE "
             f"{_f(cal['raw_ece'])} for the uncalibrated hidden model, **{_f(cal['ece'])} after** {platt}"
             + (f" and the exposure correction (scale {_f(ex.get('scale'))}, popularity slope {_f(ex.get('slope'))}, "
                f"tail term {ex.get('tail', 'none')}, intercept {_f(ex.get('intercept'))}; {ex.get('note', '')})."
                if cal.get("exposure_corrected") else "."), "",
             "| decile | n | predicted | observed | predicted before |", "|---|---|---|---|---|"]
    lines += [f"| {b['decile']} | {b['n']} | {_f(b['predicted'])} | {_f(b['observed'])} | {_f(rb['predicted'])} |"
              for b, rb in zip(cal["bins"], cal["raw_bins"], strict=True)]
    it = cal.get("interaction")
    if it is not None and cal.get("exposure_corrected"):
        lines += ["", f"The interaction model behind it (what the held-out ranking and free-choice sections use), "
                  f"{it['target']} ({it['pairs']} pairs): ECE {_f(it['raw_ece'])} before, {_f(it['ece'])} after {platt}."]
    return lines + ["", "![reliability diagram](calibration.png)", ""]


def _free(d: dict[str, Any]) -> list[str]:
    if "users" not in d:
        return ["## Free-choice distributions", "", d.get("note", "not computed"), ""]
    lines = ["## Free-choice distributions", "",
             f"{d['users']} users with held-out positives click freely over the catalogue; {d['real_clicks']} real vs "
             f"{d['simulated_clicks']} simulated clicks (level-matched, logit offset {d['logit_offset']:+.2f}).", "",
             "| distribution | Jensen–Shannon distance |", "|---|---|"]
    for n in ("popularity_decile", "genre_share"):
        lines.append(f"| {n} | {_f(d[n]['js_distance']) if d[n].get('js_distance') is not None else d[n].get('note', 'n/a')} |")
    lines += [""] + [f"![{n}]({n}.png)" for n in ("popularity_decile", "genre_share") if "labels" in d[n]]
    return lines + [""]


def sections_markdown(r: dict[str, Any], bars: dict[str, float]) -> list[str]:
    s, b = r["setup"], r["bar"]
    lines = ["## Setup", "",
             f"- {s['users']} users, {s['items']} items; positives: {s['positive_rule']}; split: {s['train_rows']} train "
             f"(of which {s['validation_rows']} validation) / {s['test_rows']} held-out rows ({s['onboarding_rows']} "
             f"onboarding rows of cold users, not evaluated); {'temporal per user' if s['temporal'] else 'seeded random per user'}; "
             f"{s['cold_users']} cold users, {s['cold_items']} cold items, {s['test_users']} test-cohort users",
             f"- encoder: `{s['encoder']}`; fit {s['fit_seconds']} s ({s['steps']} steps, {s['epochs']} epochs, cache hit: "
             f"{s['cache_hit']}); hidden quality from: {s['quality_source']}; report {s.get('report_seconds', '?')} s", ""]
    lines += _policy(r["policy_ranking"]) + _replay(r["replay"]) + _ranking(r) + _calibration(r["calibration"])
    lines += _free(r["distributions"])

    def ok(flag: bool) -> str:
        return "**pass**" if flag else "**FAIL**"

    few = b.get("tail_share_too_few_clicks") or []
    too_few = f"; not counted, too few real clicks: {', '.join(few)}" if few else ""
    lines += ["## Bars", "",
              f"- policy ranking: rho {_f(b['policy_rho'], 2)} (needs >= {bars['policy_rho']}): {ok(b['policy_pass'])}",
              f"- warm users: hidden AUC {_f(b['warm_hidden_auc'])} vs BPR-MF {_f(b['warm_bpr_auc'])} (needs >= BPR - "
              f"{bars['warm_auc_gap']}): {ok(b['warm_pass'])}",
              f"- cold items: hidden AUC {_f(b['cold_item_hidden_auc'])} vs popularity {_f(b['cold_item_pop_auc'])} (needs >= "
              f"popularity + {bars['cold_item_auc_gain']}): {ok(b['cold_item_pass'])}",
              f"- cold users: hidden AUC / NDCG {_f(b['cold_user_hidden_auc'])} / {_f(b['cold_user_hidden_ndcg'])} vs popularity "
              f"{_f(b['cold_user_pop_auc'])} / {_f(b['cold_user_pop_ndcg'])} (needs >= both): {ok(b['cold_user_pass'])}",
              f"- calibration: ECE {_f(b['ece'])} (needs <= {bars['ece']}): {ok(b['ece_pass'])}",
              f"- replay: JS over popularity deciles {_f(b['replay_js'])} (needs <= {bars['replay_js']}): {ok(b['replay_js_pass'])}",
              f"- replay: worst relative error of a decile's click share {_f(b['tail_share_max_rel_error'], 2)} (needs <= "
              f"{bars['tail_share_rel']}{too_few}): {ok(b['tail_share_pass'])}; every decile counted: "
              f"{_f(b.get('tail_share_max_rel_error_all_deciles'), 2)}", ""]
    return lines
