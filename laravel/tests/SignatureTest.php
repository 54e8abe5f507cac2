<?php

namespace Resonance\Laravel\Tests;

use PHPUnit\Framework\TestCase as Base;
use Resonance\Laravel\Support\Signature;

class SignatureTest extends Base
{
    public function testBodySignatureIsHexHmacSha256OfTheExactBody(): void
    {
        $this->assertSame(hash_hmac('sha256', '{"a":1}', 's3cret'), Signature::body('s3cret', '{"a":1}'));
        $this->assertTrue(Signature::verifyBody('s3cret', '{"a":1}', hash_hmac('sha256', '{"a":1}', 's3cret')));
        $this->assertTrue(Signature::verifyBody('s3cret', '{"a":1}', strtoupper(hash_hmac('sha256', '{"a":1}', 's3cret'))), 'hex case does not matter');
    }

    public function testVerifyBodyRefuses(): void
    {
        $good = hash_hmac('sha256', 'body', 'secret');
        $this->assertFalse(Signature::verifyBody('secret', 'body ', $good), 'one byte more');
        $this->assertFalse(Signature::verifyBody('other', 'body', $good), 'another secret');
        $this->assertFalse(Signature::verifyBody('secret', 'body', null), 'no header');
        $this->assertFalse(Signature::verifyBody('secret', 'body', ''), 'empty header');
        $this->assertFalse(Signature::verifyBody(null, 'body', hash_hmac('sha256', 'body', '')), 'no secret configured: nothing verifies');
        $this->assertFalse(Signature::verifyBody('', 'body', hash_hmac('sha256', 'body', '')), 'empty secret: nothing verifies');
    }

    /** Pusher's reference vector (pusher-http docs), as Resonance's own verifier tests it. */
    public function testApiQueryMatchesThePusherReferenceVector(): void
    {
        $body = '{"name":"foo","channels":["project-3"],"data":"{\"some\":\"data\"}"}';
        parse_str(Signature::apiQuery('278d425bdf160c739803', '7ad3773142a6692b25b8', 'POST', '/apps/3/events', $body, 1353088179), $q);
        $this->assertSame('ec365a775a4cd0599faeb73354201b6f', $q['body_md5']);
        $this->assertSame('1.0', $q['auth_version']);
        $this->assertSame('da454824c97ba181a32ccc17a72625ba02771f50b50e1e7430e47a1f3f457e6c', $q['auth_signature']);
    }

    public function testApiQuerySignsTheEncodedPathAndOmitsBodyMd5WithoutBody(): void
    {
        parse_str(Signature::apiQuery('k', 's', 'POST', '/apps/1/rooms/chat%2F1/broadcast', '', 1700000000), $q);
        $this->assertArrayNotHasKey('body_md5', $q);
        $expected = hash_hmac('sha256', "POST\n/apps/1/rooms/chat%2F1/broadcast\nauth_key=k&auth_timestamp=1700000000&auth_version=1.0", 's');
        $this->assertSame($expected, $q['auth_signature']);
    }
}
