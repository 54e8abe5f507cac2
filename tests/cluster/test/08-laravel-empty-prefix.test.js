// 8. Same with an EMPTY Laravel prefix: the ingestion pattern is `*`, so the cluster's own Redis
//    traffic must not be picked up by it (no duplicates, no stray frames).
import { defineLaravelTests } from '../lib/laravel-cases.js';

defineLaravelTests('');
