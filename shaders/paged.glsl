// The paged latent cache: position t of the sequence whose page-table row is `s` lives in row
// page_table[s][t / P] · P + t % P of the layer array. Needs page_table[] declared. -1 for a
// position whose page is unmapped or outside the pool (an engine bug: read as nothing, not
// out of bounds).
int kv_row(uint s, uint t, uint P, uint max_pages, uint n_pages) {
  const uint pi = t / P;
  if (pi >= max_pages) return -1;
  const int page = page_table[s * max_pages + pi];
  if (page < 0 || uint(page) >= n_pages) return -1;
  return int(uint(page) * P + t % P);
}
