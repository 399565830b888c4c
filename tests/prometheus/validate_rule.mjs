// Validates PrometheusRule objects (a JSON array, argv[2]) against prometheus-operator's CRD schema,
// as compiled by @kubernetes-models/prometheus-operator (installed from npm by tests/test_kube.py).
// The schema types every field but does not reject unknown ones; promtool does that for the rules.
import { PrometheusRule } from "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/PrometheusRule";
import { readFileSync } from "node:fs";
const docs = JSON.parse(readFileSync(process.argv[2], "utf8"));
let bad = 0;
for (const d of docs) {
  try { new PrometheusRule(d).validate(); console.log("ok", d.metadata.name); }
  catch (e) { bad++; console.log("invalid", d.metadata.name, e.message); }
}
process.exit(bad ? 1 : 0);
