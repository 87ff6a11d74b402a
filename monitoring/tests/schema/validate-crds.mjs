// Validates prometheus-operator objects (ServiceMonitor, PodMonitor,
// PrometheusRule) against the CRD schemas published in
// @kubernetes-models/prometheus-operator. Reads a JSON array of objects on
// stdin; prints one line per problem; exits 1 when there is any.
import { PodMonitor } from "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/PodMonitor";
import { PrometheusRule } from "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/PrometheusRule";
import { ServiceMonitor } from "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/ServiceMonitor";

const kinds = { PodMonitor, PrometheusRule, ServiceMonitor };
let input = "";
for await (const chunk of process.stdin) input += chunk;
let failed = false;
for (const object of JSON.parse(input)) {
  const Kind = kinds[object.kind];
  const name = `${object.kind}/${object.metadata?.name}`;
  if (!Kind || object.apiVersion !== "monitoring.coreos.com/v1") {
    console.log(`${name}: not a monitoring.coreos.com/v1 kind this check knows`);
    failed = true;
    continue;
  }
  try {
    new Kind(object).validate();
    console.log(`${name}: valid`);
  } catch (e) {
    console.log(`${name}: ${e.message}`);
    failed = true;
  }
}
process.exit(failed ? 1 : 0);
