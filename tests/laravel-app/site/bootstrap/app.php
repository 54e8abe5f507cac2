<?php

/*
 * The application, as Laravel 8's skeleton creates it. Everything the tests
 * vary comes from the environment (APP_KEY, REDIS_PORT, APP_STORAGE, ...),
 * so several instances can run side by side from one checkout.
 */

$app = new Illuminate\Foundation\Application(dirname(__DIR__));

// Writable state (sessions, logs, compiled views, the framework's manifests)
// lives outside the checkout when APP_STORAGE names a directory.
if ($storage = getenv('APP_STORAGE')) {
    $app->useStoragePath($storage);
    foreach (['services', 'packages', 'config', 'routes', 'events'] as $cache) {
        $key = 'APP_'.strtoupper($cache).'_CACHE';
        if (getenv($key) === false) {
            putenv("$key=$storage/bootstrap-$cache.php");
        }
    }
}

$app->singleton(Illuminate\Contracts\Http\Kernel::class, App\Http\Kernel::class);
$app->singleton(Illuminate\Contracts\Console\Kernel::class, App\Console\Kernel::class);
$app->singleton(Illuminate\Contracts\Debug\ExceptionHandler::class, App\Exceptions\Handler::class);

return $app;
