// Prints plain closing lines for CI to read: `N passed, N failed`, and the same in cargo's `test result:` shape.
export default class SummaryReporter {
  onTestRunEnd(testModules, unhandledErrors) {
    const counts = { passed: 0, failed: 0, skipped: 0 };
    for (const testModule of testModules) {
      // A file that failed to load has no tests to count; count it as a failure.
      if (testModule.state() === "failed" && [...testModule.children.allTests()].length === 0) counts.failed++;
      for (const test of testModule.children.allTests()) {
        const state = test.result().state;
        if (state === "passed") counts.passed++;
        else if (state === "failed") counts.failed++;
        else counts.skipped++;
      }
    }
    counts.failed += unhandledErrors.length;
    const skipped = counts.skipped > 0 ? `, ${counts.skipped} skipped` : "";
    process.stdout.write(`\n${counts.passed} passed, ${counts.failed} failed${skipped}\n`);
    // The repository's test.sh adds up every suite from lines in cargo's shape.
    const verdict = counts.failed === 0 ? "ok" : "FAILED";
    process.stdout.write(
      `test result: ${verdict}. ${counts.passed} passed; ${counts.failed} failed; ${counts.skipped} ignored; (relay worker)\n`,
    );
  }
}
