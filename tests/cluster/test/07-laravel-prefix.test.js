// 7. Laravel RedisBroadcaster publishes with RESONANCE_REDIS_PREFIX=laravel_database_ on a
//    2-node cluster: every node consumes them for its own clients, once per client.
import { defineLaravelTests } from '../lib/laravel-cases.js';

defineLaravelTests('laravel_database_');
