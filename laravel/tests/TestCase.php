<?php

namespace Resonance\Laravel\Tests;

use Illuminate\Contracts\Console\Kernel as ConsoleKernel;
use Illuminate\Contracts\Http\Kernel as HttpKernel;
use Illuminate\Filesystem\Filesystem;
use Illuminate\Foundation\Application;
use Illuminate\Http\Request;
use Illuminate\Support\Facades\Facade;
use PHPUnit\Framework\TestCase as Base;
use Symfony\Component\HttpFoundation\Cookie;
use Symfony\Component\HttpFoundation\Response;

/**
 * Each HTTP call runs in a fresh instance of the real application (as php-fpm would):
 * nothing cached in a guard or a singleton leaks from one request into the next. The
 * sessions (file driver) and cache live in a storage directory per test.
 */
abstract class TestCase extends Base
{
    public const SECRET = 'package-test-secret';
    public const KEY = 'package-test-key';
    public const APP_ID = '424242';

    /** @var string */
    protected $storage;
    /** @var array<string, string> the cookie jar of the test's browser */
    protected $cookies = [];
    /** @var string|null */
    protected $csrf;
    /** @var Application the application of the last request (or of app()) */
    protected $app;

    protected function setUp(): void
    {
        parent::setUp();
        $this->storage = sys_get_temp_dir().'/resonance-pkg-'.bin2hex(random_bytes(6));
        foreach (['framework/sessions', 'framework/cache/data', 'framework/views', 'logs', 'app'] as $dir) {
            mkdir($this->storage.'/'.$dir, 0777, true);
        }
        $env = [
            'APP_ENV' => 'production',
            'APP_KEY' => 'base64:'.base64_encode(str_repeat('k', 32)),
            'APP_STORAGE' => $this->storage,
            'BROADCAST_DRIVER' => 'null',
            'RESONANCE_APP_ID' => self::APP_ID,
            'RESONANCE_APP_KEY' => self::KEY,
            'RESONANCE_APP_SECRET' => self::SECRET,
            'RESONANCE_API_URL' => 'http://127.0.0.1:9',
        ];
        foreach (['APP_SERVICES_CACHE', 'APP_PACKAGES_CACHE', 'APP_CONFIG_CACHE', 'APP_ROUTES_CACHE', 'APP_EVENTS_CACHE'] as $key) {
            putenv($key);
        }
        foreach ($env as $k => $v) {
            putenv("$k=$v");
            $_ENV[$k] = $v;
            $_SERVER[$k] = $v;
        }
        $this->cookies = [];
        $this->csrf = null;
    }

    protected function tearDown(): void
    {
        (new Filesystem())->deleteDirectory($this->storage);
        Facade::clearResolvedInstances();
        parent::tearDown();
    }

    /** A fresh, bootstrapped instance of the application. */
    protected function app(): Application
    {
        Facade::clearResolvedInstances();
        $app = require RESONANCE_TEST_SITE.'/bootstrap/app.php';
        $app->make(ConsoleKernel::class)->bootstrap();
        $this->app = $app;

        return $app;
    }

    /** One HTTP request through a fresh application; cookies it sets go into the jar. */
    protected function call(string $method, string $uri, array $params = [], array $headers = [], ?string $content = null, bool $withCookies = true): Response
    {
        Facade::clearResolvedInstances();
        $app = require RESONANCE_TEST_SITE.'/bootstrap/app.php';
        $this->app = $app;
        $server = ['HTTP_ACCEPT' => 'application/json'];
        foreach ($headers as $name => $value) {
            $server['HTTP_'.strtoupper(str_replace('-', '_', $name))] = $value;
        }
        if ($content !== null) {
            $server['CONTENT_TYPE'] = 'application/json';
        }
        if ($withCookies && $this->cookies) {
            $server['HTTP_COOKIE'] = $this->cookieHeader();
        }
        // PHP's SAPI parses the Cookie header into $_COOKIE; Request::create() takes them apart.
        $request = Request::create($uri, $method, $params, $withCookies ? $this->cookies : [], [], $server, $content);
        $kernel = $app->make(HttpKernel::class);
        $response = $kernel->handle($request);
        $kernel->terminate($request, $response);
        foreach ($response->headers->getCookies() as $cookie) {
            /** @var Cookie $cookie */
            if ($cookie->isCleared()) {
                unset($this->cookies[$cookie->getName()]);
            } else {
                $this->cookies[$cookie->getName()] = $cookie->getValue();
            }
        }

        return $response;
    }

    /** The Cookie header of the test's browser (what Resonance forwards). */
    protected function cookieHeader(): string
    {
        $pairs = [];
        foreach ($this->cookies as $name => $value) {
            $pairs[] = $name.'='.rawurlencode($value);
        }

        return implode('; ', $pairs);
    }

    /** A real login through GET /login and POST /login (session, CSRF). */
    protected function login(string $email): void
    {
        $page = json_decode($this->call('GET', '/login')->getContent(), true);
        $response = $this->call('POST', '/login', ['_token' => $page['csrf_token'], 'email' => $email, 'password' => 'password']);
        $this->assertSame(200, $response->getStatusCode(), 'login: '.$response->getContent());
        $this->csrf = json_decode($response->getContent(), true)['csrf_token'];
    }

    /** A signed handler call as Resonance makes it. */
    protected function handlerCall(array $body, string $route = '/chat-rooms/{id}', ?string $signature = null, bool $withCookies = true): Response
    {
        $json = json_encode($body);
        $headers = [
            'X-Resonance-Event' => $body['event'] ?? '',
            'X-Resonance-Signature' => $signature === null ? hash_hmac('sha256', $json, self::SECRET) : $signature,
            'X-Forwarded-For' => '203.0.113.7',
        ];

        return $this->call('POST', '/resonance/socket?route='.rawurlencode($route), [], $headers, $json, $withCookies);
    }

    protected function json(Response $response): array
    {
        $decoded = json_decode($response->getContent(), true);
        $this->assertIsArray($decoded, 'JSON answer: '.$response->getContent());

        return $decoded;
    }
}
