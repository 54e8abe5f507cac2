<?php

/*
 * The package's tests run inside the real Laravel application of the end-to-end suite
 * (tests/laravel-app/site: Laravel 8.83 from Debian's php-laravel-framework, no Composer),
 * which registers this package as an application would. RESONANCE_TEST_SITE points
 * elsewhere (another Laravel app with this package's autoloading) if needed.
 */

define('RESONANCE_TEST_SITE', getenv('RESONANCE_TEST_SITE') ?: dirname(__DIR__, 2).'/tests/laravel-app/site');

require RESONANCE_TEST_SITE.'/bootstrap/autoload.php';

spl_autoload_register(static function (string $class): void {
    $prefix = 'Resonance\\Laravel\\Tests\\';
    if (strncmp($class, $prefix, strlen($prefix)) === 0) {
        $file = __DIR__.'/'.str_replace('\\', '/', substr($class, strlen($prefix))).'.php';
        if (is_file($file)) {
            require $file;
        }
    }
});
