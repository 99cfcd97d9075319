/* PLACEHOLDER until the C ABI lands (owner: vix core engineer). */
int main(void) { return 1; }
