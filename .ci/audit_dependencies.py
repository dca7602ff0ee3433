"""pip-audit over the packages requirements.txt and requirements-dev.txt install, where a
vulnerability service answers.

Run with the virtualenv's Python (``make audit``): it audits that environment, so the
dependencies of the pinned packages are audited too. Exit status: 0 when no known
vulnerability is found, or when no vulnerability service can be used from this machine (the
reason is printed and the audit skipped); 1 on any vulnerability, or on a package the service
could not audit.

A service counts as answering only if it returns the advisories of a release known to have
some (``CANARY``): a service that is reachable but knows nothing would otherwise pass every
package as clean.
"""

import json
import subprocess
import sys
import urllib.error
import urllib.request

# A release with several published advisories (CVE-2023-30608, CVE-2024-4340, ...).
CANARY = ("sqlparse", "0.4.3")
PROBE_TIMEOUT_SECONDS = 5

# Known vulnerabilities that cannot be fixed yet, by id, each with the reason it is accepted;
# pip-audit reports every other one as a failure.
IGNORED: dict[str, str] = {}


def pypi_advisories(base: str = "https://pypi.org") -> int:
    """How many advisories PyPI's JSON API (pip-audit's ``pypi`` service) lists for ``CANARY``."""
    name, version = CANARY
    with urllib.request.urlopen(f"{base}/pypi/{name}/{version}/json", timeout=PROBE_TIMEOUT_SECONDS) as answer:  # noqa: S310 - a fixed https URL (or a test's)  # nosec B310
        return len(json.load(answer).get("vulnerabilities") or [])


def osv_advisories(base: str = "https://api.osv.dev") -> int:
    """How many advisories OSV (pip-audit's ``osv`` service) lists for ``CANARY``."""
    name, version = CANARY
    query = json.dumps({"package": {"name": name, "ecosystem": "PyPI"}, "version": version}).encode()
    request = urllib.request.Request(  # noqa: S310 - a fixed https URL (or a test's)
        f"{base}/v1/query", data=query, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=PROBE_TIMEOUT_SECONDS) as answer:  # noqa: S310 - as above  # nosec B310
        return len(json.load(answer).get("vulns") or [])


def choose_service(probes: dict) -> tuple[str | None, list[str]]:
    """The first service whose probe finds the canary's advisories, and why each one before it
    could not be used."""
    reasons = []
    for service, probe in probes.items():
        try:
            found = probe()
        except urllib.error.HTTPError as error:
            reasons.append(f"{service}: HTTP {error.code} for the advisories of {'=='.join(CANARY)}")
            continue
        except (OSError, ValueError) as error:  # unreachable, timed out, or not JSON
            reasons.append(f"{service}: {error.__class__.__name__}: {error}")
            continue
        if found:
            return service, reasons
        reasons.append(f"{service}: answers, but lists no advisory for {'=='.join(CANARY)}, which has some")
    return None, reasons


def main() -> int:
    service, reasons = choose_service({"pypi": pypi_advisories, "osv": osv_advisories})
    if service is None:
        print("pip-audit SKIPPED: no vulnerability service can be used from here.")
        for reason in reasons:
            print(f"  {reason}")
        return 0
    for reason in reasons:
        print(f"pip-audit: not using {reason}")
    print(f"pip-audit: auditing this environment with the {service} service")
    command = [sys.executable, "-m", "pip_audit", "--local", "--strict", "--skip-editable", "--progress-spinner", "off"]
    command += ["--vulnerability-service", service, "--desc", "on"]
    for vulnerability, reason in IGNORED.items():
        print(f"pip-audit: ignoring {vulnerability}: {reason}")
        command += ["--ignore-vuln", vulnerability]
    return subprocess.run(command, check=False).returncode  # noqa: S603 - pip-audit with fixed arguments  # nosec B603


if __name__ == "__main__":
    sys.exit(main())
