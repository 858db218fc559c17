export function money(minor: number, currency: string): string {
  return new Intl.NumberFormat("en-US", { style: "currency", currency }).format(minor / 100);
}

export function moneyByCurrency(amounts: Record<string, number>, empty = "—"): string {
  const parts = Object.entries(amounts).map(([currency, minor]) => money(minor, currency));
  return parts.length ? parts.join(" + ") : empty;
}

/** What to show of a refusal or failure, whatever was thrown. */
export function reason(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
