// Which log lines start and end the Dockerfile's steps, as the worker writes them, and what
// they say of each step: cached or ran, how long it took, whether it failed.
// BuildKit (worker/buildkit_progress.py): "[2/3] RUN make" starts step [2/3] ("… (continued)"
// when its output resumes after another step's), "[2/3] CACHED", "[2/3] done in 0.2s" or
// "[2/3] ERROR: …" ends it. The classic builder (worker/docker_build.py): "Step 2/3 : RUN make"
// starts a step, " ---> Using cache" or " ---> Running in …" says which it is, "Successfully
// built …" follows the last.

const BUILDKIT = /^(\[(?:[^\]]* )?\d+\/\d+\]) (.*)$/;
const BUILDKIT_END = /^(?:CACHED|done in (\d+(?:\.\d+)?)s|ERROR: .*)$/;
const CLASSIC = /^Step (\d+\/\d+) : /;
const CLASSIC_CACHED = " ---> Using cache";
const CLASSIC_RAN = /^ ---> Running in [0-9a-f]{12,64}$/;
const CLASSIC_END = /^Successfully built /;

/** What a line says about steps, or null:
 * {start: key, continued} | {end: key, cached, seconds, failed} | {state: cached} | {after: true}
 * (key: "[2/3]" or "Step 2/3"; "state" and "after" are about the classic builder's current step). */
export function stepLine(text) {
  const buildkit = BUILDKIT.exec(text);
  if (buildkit) {
    const [, key, rest] = buildkit;
    const end = BUILDKIT_END.exec(rest);
    if (!end) return { start: key, continued: rest.endsWith(" (continued)") };
    const seconds = end[1] ?? null; // as BuildKit wrote it: "0.4", "12.3"
    return { end: key, cached: rest === "CACHED", seconds, failed: rest.startsWith("ERROR: ") };
  }
  const classic = CLASSIC.exec(text);
  if (classic) return { start: `Step ${classic[1]}`, continued: false };
  if (text === CLASSIC_CACHED) return { state: "cached" };
  if (CLASSIC_RAN.test(text)) return { state: "ran" };
  if (CLASSIC_END.test(text)) return { after: true };
  return null;
}
